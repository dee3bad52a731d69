//! Rules by port protocol, as Istio builds its filter chains: `tls` rules on TLS ports
//! (routed by SNI in the proxy, all endpoints for the rest; tcp rules never apply there),
//! and `http` rules on ports of undeclared protocol (sniffed: HTTP by the http rules in
//! the proxy, the rest by the tcp route).

use super::*;

/// `api` on 443 (TLS) with versions v1..v3 and a DestinationRule for them, and `rules`.
fn api(rules: &str) -> String {
    service_entry(
        "api",
        "  hosts: [api.example.com]
  addresses: [10.0.0.20]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints:
  - {address: 10.3.0.1, labels: {version: v1}}
  - {address: 10.3.0.2, labels: {version: v2}}
  - {address: 10.3.0.3, labels: {version: v3}}
",
    ) + &resource(
        "DestinationRule",
        "api",
        "  host: api.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
",
    ) + &resource(
        "VirtualService",
        "api",
        &format!("  hosts: [api.example.com, '*.api.example.com']\n{rules}"),
    )
}

/// (cluster name, weight) per destination of a rule.
type Destinations<'a> = Vec<(&'a str, u32)>;

fn plan_of(compiled: &Compiled) -> &ServicePlan {
    compiled
        .plan
        .get(ip("10.0.0.20"), 443, Protocol::Tcp)
        .expect("the api service")
}

#[test]
fn sni_rules_go_to_the_proxy_and_the_rest_to_all_endpoints() {
    let compiled = compile_ok(&api("  tls:
  - match: [{sniHosts: [a.api.example.com]}, {sniHosts: [other.api.example.com], port: 8443}]
    route: [{destination: {host: api.example.com, subset: v1}}]
  - match: [{sniHosts: ['*.b.api.example.com'], port: 443}]
    route:
    - {destination: {host: api.example.com, subset: v1}, weight: 80}
    - {destination: {host: api.example.com, subset: v2}, weight: 20}
  - match: [{sniHosts: [c.api.example.com], destinationSubnets: [10.9.0.0/16]}]
    route: [{destination: {host: api.example.com, subset: v2}}]
  tcp:
  - route: [{destination: {host: api.example.com, subset: v3}}]
"));
    let plan = plan_of(&compiled);
    match &plan.decision {
        Decision::Proxy { reason } => {
            assert_eq!(
                reason,
                "VirtualService default/api tls[0].match[0].sniHosts"
            )
        }
        other => panic!("{other:?}"),
    }
    // At connect time (and for any SNI no rule takes): all endpoints; Istio builds no TCP
    // chain for a TLS port, so its tcp rule does not apply.
    assert_eq!(backends(&compiled, "10.0.0.20", 443).len(), 3);
    assert!(
        has_note(&compiled, "its tcp rules do not apply to a TLS port"),
        "{:?}",
        compiled.notes
    );
    let table = plan.http.as_ref().expect("a table");
    assert!(table.rules.is_empty());
    let tls = table.tls.as_ref().expect("tls routes");
    // The match for port 8443 and the rule whose subnet leaves the VIP out do not hold.
    let rules: Vec<(&[String], Destinations)> = tls
        .rules
        .iter()
        .map(|r| {
            let to = r
                .destinations
                .iter()
                .map(|d| (table.clusters[d.cluster].name.as_str(), d.weight))
                .collect();
            (r.sni_hosts.as_slice(), to)
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                &["a.api.example.com".to_string()][..],
                vec![("outbound|443|v1|api.example.com", 1_000_000)]
            ),
            (
                &["*.b.api.example.com".to_string()][..],
                vec![
                    ("outbound|443|v1|api.example.com", 800_000),
                    ("outbound|443|v2|api.example.com", 200_000)
                ]
            ),
        ]
    );
    let fallback = &table.clusters[tls.fallback.expect("a fallback")];
    let endpoints: Vec<String> = fallback
        .endpoints
        .iter()
        .map(|e| format!("{}:{}", e.address, e.port))
        .collect();
    assert_eq!(endpoints, ["10.3.0.1:443", "10.3.0.2:443", "10.3.0.3:443"]);
}

#[test]
fn a_tls_port_without_a_tls_rule_takes_all_endpoints_whatever_the_tcp_rules() {
    let compiled = compile_ok(&api(
        "  tcp:\n  - route: [{destination: {host: api.example.com, subset: v3}}]\n",
    ));
    assert_eq!(plan_of(&compiled).decision, Decision::Kernel);
    assert_eq!(backends(&compiled, "10.0.0.20", 443).len(), 3);
    assert!(
        has_note(&compiled, "its tcp rules do not apply to a TLS port"),
        "{:?}",
        compiled.notes
    );
    // A tls rule for another port does not apply here either.
    let compiled = compile_ok(&api("  tls:
  - match: [{sniHosts: [a.api.example.com], port: 8443}]
    route: [{destination: {host: api.example.com, subset: v1}}]
"));
    assert_eq!(plan_of(&compiled).decision, Decision::Kernel);
    assert_eq!(backends(&compiled, "10.0.0.20", 443).len(), 3);
}

#[test]
fn a_tls_rule_needs_a_match_with_sni_hosts() {
    for (rules, field) in [
        (
            "  tls:\n  - route: [{destination: {host: api.example.com}}]\n",
            "spec.tls[0].match",
        ),
        (
            "  tls:\n  - match: [{port: 443}]\n    route: [{destination: {host: api.example.com}}]\n",
            "spec.tls[0].match[0].sniHosts",
        ),
        (
            "  tls:\n  - match: [{sniHosts: [a.api.example.com]}]\n",
            "spec.tls[0].route",
        ),
        (
            "  tls:\n  - match: [{sniHosts: ['*foo.api.example.com']}]\n    route: [{destination: {host: api.example.com}}]\n",
            "spec.tls[0].match[0].sniHosts[0]",
        ),
        (
            "  tls:\n  - match: [{sniHosts: [api.example.com, x.other.com]}]\n    route: [{destination: {host: api.example.com}}]\n",
            "spec.tls[0].match[0].sniHosts[1]",
        ),
    ] {
        let (compiled, _) = compile_text(&api(rules));
        single_error(&compiled, "VirtualService default/api", field);
    }
}

/// `web` on 8000 with no protocol declared (Istio sniffs it), and `rules`.
fn sniffed(rules: &str) -> String {
    service_entry(
        "web",
        "  hosts: [web.example.com]
  addresses: [10.0.0.30]
  ports: [{number: 8000, name: web}]
  resolution: STATIC
  endpoints:
  - {address: 10.4.0.1, labels: {version: v1}}
  - {address: 10.4.0.2, labels: {version: v2}}
",
    ) + &resource(
        "DestinationRule",
        "web",
        "  host: web.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
",
    ) + &resource(
        "VirtualService",
        "web",
        &format!("  hosts: [web.example.com]\n{rules}"),
    )
}

/// Istio sniffs a port without a declared protocol: its http rules serve what speaks HTTP
/// (so the proxy must see the connection), its tcp rules the rest.
#[test]
fn http_rules_on_a_sniffed_port_go_to_the_proxy_with_the_tcp_route_for_the_rest() {
    let compiled = compile_ok(&sniffed(
        "  http:
  - match: [{headers: {x-v: {exact: '2'}}}]
    route: [{destination: {host: web.example.com, subset: v2}}]
  - route: [{destination: {host: web.example.com, subset: v1}}]
  tcp:
  - route: [{destination: {host: web.example.com, subset: v2}}]
",
    ));
    let plan = compiled
        .plan
        .get(ip("10.0.0.30"), 8000, Protocol::Tcp)
        .expect("web");
    match &plan.decision {
        Decision::Proxy { reason } => {
            assert!(reason.contains("whose protocol Istio detects"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        backends(&compiled, "10.0.0.30", 8000),
        expect(&[("10.4.0.2:8000", 1_000_000)])
    );
    let table = plan.http.as_ref().expect("a table");
    assert_eq!(table.rules.len(), 2);
    let fallback = table
        .sniffed
        .expect("sniffed")
        .fallback
        .expect("a tcp route");
    let endpoints: Vec<String> = table.clusters[fallback]
        .endpoints
        .iter()
        .map(|e| format!("{}:{}", e.address, e.port))
        .collect();
    assert_eq!(endpoints, ["10.4.0.2:8000"]);

    // Only tcp rules: the kernel serves it, as before.
    let compiled = compile_ok(&sniffed(
        "  tcp:\n  - route: [{destination: {host: web.example.com, subset: v1}}]\n",
    ));
    let plan = compiled
        .plan
        .get(ip("10.0.0.30"), 8000, Protocol::Tcp)
        .expect("web");
    assert_eq!(plan.decision, Decision::Kernel);
    assert!(plan.http.is_none());
}
