//! The proxy's ejections for `vsteer status`: read from the running agent's
//! `/proxy/ejections`, each endpoint with the cluster that ejected it, why, and for how long
//! more (the kernel's tables leave it out meanwhile).

use std::net::SocketAddr;

use super::admin_client::{self, Answer};
use crate::app::{EJECTIONS_PAGE, EjectionRecord};

/// The section `vsteer status` prints: empty when no proxy runs (or no agent: the proxy
/// counters' section says so).
pub fn section(admin: SocketAddr) -> String {
    let page = match admin_client::get(admin, EJECTIONS_PAGE) {
        Ok(Answer::Page(page)) => page,
        Ok(Answer::NotFound) | Err(_) => return String::new(),
    };
    match serde_json::from_str::<Vec<EjectionRecord>>(&page) {
        Ok(records) => render(admin, &records),
        Err(e) => format!("\nejected endpoints: {admin}{EJECTIONS_PAGE} is not a list ({e})\n"),
    }
}

fn render(admin: SocketAddr, records: &[EjectionRecord]) -> String {
    let mut out = format!(
        "\nejected endpoints ({admin}{EJECTIONS_PAGE}): {}{}\n",
        records.len(),
        if records.is_empty() {
            ""
        } else {
            " (left out of the kernel's tables of every service they back until the ejection ends)"
        }
    );
    if records.is_empty() {
        return out;
    }
    out.push_str("ENDPOINT               FOR      LEFT     TIMES  WHY  CLUSTER\n");
    for r in records {
        out.push_str(&format!(
            "{:<22} {:>7.1}s {:>7.1}s {:>5}  {} {} in a row  {}\n",
            r.address.to_string(),
            r.ejected_for,
            r.remaining,
            r.times,
            r.failures,
            r.reason,
            r.cluster
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ejection_says_which_endpoint_why_and_for_how_long() {
        let record = EjectionRecord {
            address: "127.0.1.1:80".parse().expect("an address"),
            cluster: "web.default.svc.cluster.local||80".to_string(),
            reason: "consecutive5xxErrors".to_string(),
            failures: 3,
            ejected_for: 1.25,
            remaining: 28.75,
            times: 1,
        };
        let admin: SocketAddr = "127.0.0.1:15020".parse().expect("an address");
        let text = render(admin, &[record]);
        assert!(text.contains("ejected endpoints (127.0.0.1:15020/proxy/ejections): 1"));
        let line = text.lines().last().expect("a line");
        for part in [
            "127.0.1.1:80",
            "1.2s",
            "28.8s",
            "3 consecutive5xxErrors in a row",
            "web.default.svc.cluster.local||80",
        ] {
            assert!(line.contains(part), "{part:?} not in {line:?}");
        }
        assert!(render(admin, &[]).ends_with(": 0\n"));
    }
}
