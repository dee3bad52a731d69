//! The plan as text, for `vsteer plan` and logs: a block per service, its backends in
//! columns aligned across the whole plan; for a proxied service, why, and its HTTP rules.
pub mod columns;
mod http;

use std::fmt::Write as _;
use std::net::SocketAddr;

use columns::{Align, Columns};

use crate::service::{Decision, Plan, ServicePlan, WEIGHT_SCALE};

/// A block per service: a line with the service, its host, the rule that routes it and its
/// load balancer, then one indented line per backend with its share of connections,
/// subsets and labels. A proxied service shows, between the two, why it is proxied and its
/// HTTP rules; its route and backends are then what the kernel does when the proxy does not
/// take a connection. Depends only on the plan.
pub fn render(plan: &Plan) -> String {
    if plan.is_empty() {
        return "no services\n".to_string();
    }
    // Columns line up across the whole plan: measured over every backend first.
    let mut columns = Columns::new([Align::Left; 4]);
    for service in plan.services() {
        for row in backend_rows(service) {
            columns.measure(&row);
        }
    }
    let mut out = String::new();
    for (i, service) in plan.services().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let route = match &service.route {
            Some(route) => route.to_string(),
            None => "- (all endpoints)".to_string(),
        };
        let _ = writeln!(
            out,
            "{} {} {}  route: {route}  lb: {}",
            service.key.address_port(),
            service.key.protocol,
            service.host,
            service.load_balancer
        );
        if let Decision::Proxy { reason } = &service.decision {
            let _ = writeln!(out, "  proxy: {reason}");
            for rule in service.http.iter().flat_map(|t| http::rules(t)) {
                let _ = writeln!(out, "    {rule}");
            }
            out.push_str("  at connect time, when the proxy does not take it:\n");
        }
        if service.backends.is_empty() {
            out.push_str("  no backend: connects refused\n");
        }
        for row in backend_rows(service) {
            out.push_str("  ");
            columns.write(&mut out, &row);
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
                if backend.is_refused() {
                    "(refused)".to_string()
                } else if backend.is_passthrough() {
                    "(address dialled)".to_string()
                } else {
                    SocketAddr::new(backend.address, backend.port).to_string()
                },
                share(backend.weight),
                format!("subsets: {}", or_dash(backend.subsets.join(","))),
                format!("labels: {}", or_dash(labels.join(","))),
            ]
        })
        .collect()
}

/// A weight as a percentage: one decimal from 1% up, and below that up to three, so a
/// small share never reads as 0; what rounds to 100% but is not all reads `>99.9%`.
pub fn share(weight: u32) -> String {
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
    use crate::route::{RouteRef, RuleRef, Section};
    use crate::service::{BackendPlan, Decision, LoadBalancer, Protocol, ServiceKey};
    use vsteer_model::{Kind, Labels, ResourceId};

    fn vs() -> ResourceId {
        ResourceId::new(Kind::VirtualService, "default", "web")
    }

    fn backend(address: &str, port: u16, weight: u32, version: &str) -> BackendPlan {
        BackendPlan {
            address: address.parse().unwrap(),
            port,
            weight,
            labels: [("version", version)].into_iter().collect(),
            subsets: vec![version.into()],
        }
    }

    fn service(vip: &str, port: u16, backends: Vec<BackendPlan>) -> ServicePlan {
        ServicePlan {
            key: ServiceKey::new(vip.parse().unwrap(), port, Protocol::Tcp),
            host: "web.example.com".into(),
            resource: ResourceId::new(Kind::ServiceEntry, "default", "web"),
            route: None,
            load_balancer: LoadBalancer::Random,
            backends,
            decision: Decision::Kernel,
            http: None,
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
        canary.route = Some(RouteRef::rule(&vs(), Section::Http, 1));
        canary.load_balancer = LoadBalancer::RoundRobin;
        let mut dns = service(
            "fd00::1",
            53,
            vec![BackendPlan {
                labels: Labels::default(),
                subsets: Vec::new(),
                ..backend("fd00::53", 53, WEIGHT_SCALE, "x")
            }],
        );
        dns.key.protocol = Protocol::Udp;
        dns.host = "dns.example.com".into();
        let mut refused = service("10.0.0.2", 80, Vec::new());
        refused.route = Some(RouteRef {
            resource: vs(),
            rule: RuleRef::NoMatch,
        });
        let plan: Plan = [canary, refused, dns].into_iter().collect();
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
