//! The proxy's counters for `vsteer status`: read from the running agent's `/metrics` (the
//! proxy lives in the agent's process, not in the kernel maps), its `vsteer_proxy_*` lines
//! shown as they are. No agent, or no admin endpoint: said so, not an error.

use std::net::SocketAddr;

use super::admin_client::{self, Answer};

/// The `vsteer_proxy_*` samples of the agent's `/metrics` at `admin`, or why there are none.
pub fn read(admin: SocketAddr) -> Result<Vec<String>, String> {
    match admin_client::get(admin, "/metrics")? {
        Answer::Page(body) => Ok(samples(&body)),
        Answer::NotFound => Err(format!("{admin}/metrics answered 404")),
    }
}

/// The sample lines of the proxy's metrics (comments and other families left out).
fn samples(body: &str) -> Vec<String> {
    body.lines()
        .filter(|line| line.starts_with("vsteer_proxy_"))
        .map(String::from)
        .collect()
}

/// The section `vsteer status` prints.
pub fn render(admin: SocketAddr, counters: Result<Vec<String>, String>) -> String {
    match counters {
        Ok(lines) if lines.is_empty() => {
            format!("\nproxy counters ({admin}): none (the agent runs no proxy)\n")
        }
        Ok(lines) => {
            let mut out = format!("\nproxy counters ({admin}/metrics):\n");
            for line in lines {
                out.push_str("  ");
                out.push_str(&line);
                out.push('\n');
            }
            out
        }
        Err(why) => format!("\nproxy counters: {why}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_proxys_samples_are_shown() {
        let body = "# HELP vsteer_proxy_requests Requests answered\n\
                    # TYPE vsteer_proxy_requests counter\n\
                    vsteer_proxy_requests_total{class=\"2xx\"} 7\n\
                    vsteer_other 1\n\
                    vsteer_proxy_upstream_retries_total 2\n";
        assert_eq!(
            samples(body),
            [
                "vsteer_proxy_requests_total{class=\"2xx\"} 7",
                "vsteer_proxy_upstream_retries_total 2"
            ]
        );
        let admin: SocketAddr = "127.0.0.1:15020".parse().unwrap();
        let shown = render(
            admin,
            Err("no agent admin endpoint at 127.0.0.1:15020".into()),
        );
        assert_eq!(
            shown,
            "\nproxy counters: no agent admin endpoint at 127.0.0.1:15020\n"
        );
    }
}
