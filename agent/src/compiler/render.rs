//! The plan as a text table, for `vsteer plan` and logs.

use std::net::SocketAddr;

use super::plan::Plan;

const HEADER: [&str; 7] = [
    "SERVICE", "PROTO", "HOST", "BACKEND", "SHARE", "SUBSETS", "LABELS",
];

/// One row per backend, grouped by service; the service columns are printed on the first
/// row of each group only. Columns are aligned and the output depends only on the plan.
pub fn render(plan: &Plan) -> String {
    if plan.services.is_empty() {
        return "no services\n".to_string();
    }
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(String::from)];
    for service in &plan.services {
        let key = [
            SocketAddr::new(service.vip, service.port).to_string(),
            service.protocol.to_string(),
            service.host.clone(),
        ];
        let total: u64 = service.backends.iter().map(|b| u64::from(b.weight)).sum();
        if service.backends.is_empty() {
            let [vip, proto, host] = key;
            rows.push([
                vip,
                proto,
                host,
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            continue;
        }
        for (i, backend) in service.backends.iter().enumerate() {
            let [vip, proto, host] = if i == 0 {
                key.clone()
            } else {
                Default::default()
            };
            let share = if total == 0 {
                "-".to_string()
            } else {
                // Lossless enough for a display: weights are far below 2^52.
                format!("{:.1}%", backend.weight as f64 * 100.0 / total as f64)
            };
            rows.push([
                vip,
                proto,
                host,
                SocketAddr::new(backend.address, backend.port).to_string(),
                share,
                or_dash(backend.subsets.join(",")),
                or_dash(
                    backend
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ]);
        }
    }

    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::plan::{BackendPlan, Protocol, ServicePlan};
    use std::collections::BTreeMap;

    fn backend(address: &str, port: u16, version: &str) -> BackendPlan {
        BackendPlan {
            address: address.parse().unwrap(),
            port,
            weight: 1,
            labels: BTreeMap::from([("version".to_string(), version.to_string())]),
            subsets: vec![version.to_string()],
        }
    }

    #[test]
    fn table_is_aligned_grouped_and_brackets_ipv6() {
        let plan = Plan {
            services: vec![
                ServicePlan {
                    vip: "10.0.0.1".parse().unwrap(),
                    port: 80,
                    protocol: Protocol::Tcp,
                    host: "web.example.com".into(),
                    resource: "ServiceEntry default/web".into(),
                    backends: vec![
                        backend("10.1.0.1", 8080, "v1"),
                        backend("10.1.0.2", 8080, "v2"),
                        backend("10.1.0.3", 8080, "v3"),
                    ],
                },
                ServicePlan {
                    vip: "fd00::1".parse().unwrap(),
                    port: 53,
                    protocol: Protocol::Udp,
                    host: "dns.example.com".into(),
                    resource: "ServiceEntry default/dns".into(),
                    backends: vec![BackendPlan {
                        labels: BTreeMap::new(),
                        subsets: Vec::new(),
                        ..backend("fd00::53", 53, "x")
                    }],
                },
            ],
        };
        let expected = "\
SERVICE       PROTO  HOST             BACKEND        SHARE   SUBSETS  LABELS
10.0.0.1:80   TCP    web.example.com  10.1.0.1:8080  33.3%   v1       version=v1
                                      10.1.0.2:8080  33.3%   v2       version=v2
                                      10.1.0.3:8080  33.3%   v3       version=v3
[fd00::1]:53  UDP    dns.example.com  [fd00::53]:53  100.0%  -        -
";
        assert_eq!(render(&plan), expected);
    }

    #[test]
    fn empty_plan_says_so() {
        assert_eq!(render(&Plan::default()), "no services\n");
    }
}
