//! The plan as text, for `vsteer plan` and logs.

use std::net::SocketAddr;

use super::plan::{Plan, ServicePlan, WEIGHT_SCALE};

/// A block per service: a line with the service, its host, the rule that routes it and its
/// load balancer, then one indented line per backend with its share of connections,
/// subsets and labels, aligned across the whole plan. Depends only on the plan.
pub fn render(plan: &Plan) -> String {
    if plan.services.is_empty() {
        return "no services\n".to_string();
    }
    let rows: Vec<Vec<[String; 4]>> = plan.services.iter().map(backend_rows).collect();
    let mut widths = [0usize; 4];
    for row in rows.iter().flatten() {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, (service, rows)) in plan.services.iter().zip(&rows).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{} {} {}  route: {}  lb: {}\n",
            SocketAddr::new(service.vip, service.port),
            service.protocol,
            service.host,
            service.route.as_deref().unwrap_or("- (all endpoints)"),
            service.load_balancer
        ));
        if rows.is_empty() {
            out.push_str("  no backend: connects refused\n");
        }
        for row in rows {
            let mut line = String::from(" ");
            for (cell, width) in row.iter().zip(widths) {
                line.push_str(&format!(" {cell:<width$} "));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

fn backend_rows(service: &ServicePlan) -> Vec<[String; 4]> {
    service
        .backends
        .iter()
        .map(|backend| {
            let labels: Vec<String> = backend
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            [
                SocketAddr::new(backend.address, backend.port).to_string(),
                share(backend.weight),
                format!("subsets: {}", or_dash(backend.subsets.join(","))),
                format!("labels: {}", or_dash(labels.join(","))),
            ]
        })
        .collect()
}

/// A weight as a percentage: one decimal from 1% up, and below that up to three, so a
/// small share never reads as 0; what rounds to 100% but is not all reads `>99.9%`.
fn share(weight: u32) -> String {
    let ppm = u64::from(weight);
    // Thousandths of a percent are tens of ppm; round half up.
    let milli = (ppm + 5) / 10;
    if milli == 0 {
        return "<0.001%".to_string();
    }
    if milli < 1000 {
        let digits = format!("{milli:03}");
        return format!("0.{}%", digits.trim_end_matches('0'));
    }
    let tenths = (ppm + 500) / 1000;
    if tenths >= 1000 && weight < WEIGHT_SCALE {
        return ">99.9%".to_string();
    }
    format!("{}.{}%", tenths / 10, tenths % 10)
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::plan::{BackendPlan, LoadBalancer, Protocol};
    use std::collections::BTreeMap;

    fn backend(address: &str, port: u16, weight: u32, version: &str) -> BackendPlan {
        BackendPlan {
            address: address.parse().unwrap(),
            port,
            weight,
            labels: BTreeMap::from([("version".to_string(), version.to_string())]),
            subsets: vec![version.to_string()],
        }
    }

    fn service(vip: &str, port: u16, backends: Vec<BackendPlan>) -> ServicePlan {
        ServicePlan {
            vip: vip.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            host: "web.example.com".into(),
            resource: "ServiceEntry default/web".into(),
            route: None,
            load_balancer: LoadBalancer::Random,
            backends,
        }
    }

    #[test]
    fn blocks_show_route_lb_and_aligned_backends() {
        let mut canary = service(
            "10.0.0.1",
            80,
            vec![
                backend("10.1.0.1", 8080, 333_334, "v1"),
                backend("10.1.0.2", 8080, 333_333, "v2"),
                backend("10.1.0.10", 8080, 333_333, "v3"),
            ],
        );
        canary.route = Some("VirtualService default/web http[1]".into());
        canary.load_balancer = LoadBalancer::RoundRobin;
        let mut dns = service(
            "fd00::1",
            53,
            vec![BackendPlan {
                labels: BTreeMap::new(),
                subsets: Vec::new(),
                ..backend("fd00::53", 53, WEIGHT_SCALE, "x")
            }],
        );
        dns.protocol = Protocol::Udp;
        dns.host = "dns.example.com".into();
        let mut refused = service("10.0.0.2", 80, Vec::new());
        refused.route = Some("VirtualService default/web (no rule matches)".into());
        let plan = Plan {
            services: vec![canary, refused, dns],
        };
        let expected = "\
10.0.0.1:80 TCP web.example.com  route: VirtualService default/web http[1]  lb: ROUND_ROBIN
  10.1.0.1:8080   33.3%   subsets: v1  labels: version=v1
  10.1.0.2:8080   33.3%   subsets: v2  labels: version=v2
  10.1.0.10:8080  33.3%   subsets: v3  labels: version=v3

10.0.0.2:80 TCP web.example.com  route: VirtualService default/web (no rule matches)  lb: RANDOM
  no backend: connects refused

[fd00::1]:53 UDP dns.example.com  route: - (all endpoints)  lb: RANDOM
  [fd00::53]:53   100.0%  subsets: -   labels: -
";
        assert_eq!(render(&plan), expected);
    }

    #[test]
    fn small_shares_never_read_as_zero() {
        let cases = [
            (1_000_000, "100.0%"),
            (999_999, ">99.9%"),
            (999_000, "99.9%"),
            (800_000, "80.0%"),
            (10_000, "1.0%"),
            (9_999, "1.0%"),
            (3_333, "0.333%"),
            (1_000, "0.1%"),
            (500, "0.05%"),
            (10, "0.001%"),
            (4, "<0.001%"),
        ];
        for (weight, text) in cases {
            assert_eq!(share(weight), text, "{weight}");
        }
    }

    #[test]
    fn empty_plan_says_so() {
        assert_eq!(render(&Plan::default()), "no services\n");
    }
}
