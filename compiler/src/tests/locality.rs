//! `localityLbSetting.distribute`, seen from the node's locality: each `to` pattern gets
//! its percentage, split among its endpoints by their own weights; the rest get nothing.

use super::*;
use crate::locality::Locality;

/// Endpoints in three localities (one weighted 3) and one without, at 10.0.0.1:80 (TCP),
/// with a DestinationRule whose `loadBalancer` is `lb` (indented under it).
fn located(lb: &str, protocol: &str) -> String {
    let entry = service_entry(
        "api",
        &format!(
            "  hosts: [api.example.com]
  addresses: [10.0.0.1]
  ports: [{{number: 80, name: port, protocol: {protocol}}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.1.0.1, locality: us-west/zone1/sub1, labels: {{version: v1}}}}
  - {{address: 10.1.0.2, locality: us-west/zone1/sub2, weight: 3, labels: {{version: v1}}}}
  - {{address: 10.1.0.3, locality: us-west/zone2/sub1, labels: {{version: v1}}}}
  - {{address: 10.1.0.4, locality: us-east/zone1/sub1, labels: {{version: v2}}}}
  - {{address: 10.1.0.5, labels: {{version: v1}}}}
"
        ),
    );
    let rule = resource(
        "DestinationRule",
        "api",
        &format!(
            "  host: api.example.com
  subsets: [{{name: v1, labels: {{version: v1}}}}]
  trafficPolicy:
    loadBalancer:
{lb}"
        ),
    );
    format!("{entry}{rule}")
}

const DISTRIBUTE: &str = "      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to: {'us-west/zone1/*': 80, 'us-west/zone2/*': 20}
        - from: us-east
          to: {'*': 100}
";

fn at(text: &str, node: Option<&str>) -> Compiled {
    let loaded = parse_str("t.yaml", text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let node = node.map(|n| Locality::parse(n).unwrap());
    let compiled = compile_at(&loaded.resources, &Plan::default(), node.as_ref());
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    compiled
}

#[test]
fn the_node_locality_picks_the_distribution_and_endpoint_weights_split_it() {
    let text = located(DISTRIBUTE, "TCP");
    // zone1: 80% as 1:3; zone2: 20%; us-east and no locality: nothing.
    assert_eq!(
        backends(&at(&text, Some("us-west/zone1/sub7")), "10.0.0.1", 80),
        expect(&[
            ("10.1.0.1:80", 200_000),
            ("10.1.0.2:80", 600_000),
            ("10.1.0.3:80", 200_000),
        ])
    );
    // The second entry: '*' takes every endpoint, as their own weights say (1+3+1+1+1).
    let everywhere = backends(&at(&text, Some("us-east/zone9")), "10.0.0.1", 80);
    assert_eq!(everywhere.len(), 5);
    assert_eq!(everywhere[1], ("10.1.0.2:80".to_string(), 428_572));
    // A node no `from` matches, or none configured: the endpoints' own weights.
    let unset = backends(&at(&text, None), "10.0.0.1", 80);
    assert_eq!(unset, everywhere);
    assert_eq!(
        backends(&at(&text, Some("eu/zone1")), "10.0.0.1", 80),
        unset
    );
    // enabled: false turns it off.
    let off = located(&format!("{DISTRIBUTE}        enabled: false\n"), "TCP");
    assert_eq!(
        backends(&at(&off, Some("us-west/zone1/sub1")), "10.0.0.1", 80),
        unset
    );
}

/// The distribution applies within the subset a route sends to (Istio's per-cluster
/// weights), and to the proxy's clusters as to the kernel's tables.
#[test]
fn a_subset_and_the_proxy_see_the_same_distribution() {
    let vs = resource(
        "VirtualService",
        "api",
        "  hosts: [api.example.com]
  http:
  - match: [{headers: {x-canary: {exact: '1'}}}]
    route: [{destination: {host: api.example.com, subset: v1}}]
  - route: [{destination: {host: api.example.com, subset: v1}}]
",
    );
    let text = format!("{}{vs}", located(DISTRIBUTE, "HTTP"));
    let compiled = at(&text, Some("us-west/zone1/sub1"));
    let cluster = first_cluster_of(&compiled);
    let weights: Vec<(String, u32)> = cluster
        .endpoints
        .iter()
        .map(|e| (format!("{}:{}", e.address, e.port), e.weight))
        .collect();
    assert_eq!(
        weights,
        expect(&[
            ("10.1.0.1:80", 200_000),
            ("10.1.0.2:80", 600_000),
            ("10.1.0.3:80", 200_000),
        ])
    );
}

fn first_cluster_of(compiled: &Compiled) -> &vsteer_plan::http::Cluster {
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    &service.http.as_ref().expect("a route table").clusters[0]
}

#[test]
fn locality_settings_are_validated_as_istio_does() {
    let cases = [
        (
            "      localityLbSetting:
        distribute: [{from: 'us-west/*', to: {'us-west/*': 70, 'us-east/*': 20}}]
",
            "add up to 90",
        ),
        (
            "      localityLbSetting:
        distribute: [{from: 'us-west/*', to: {'us-west/*': 100}}]
        failover: [{from: us-west, to: us-east}]
",
            "only one of distribute and failover",
        ),
        (
            "      localityLbSetting:
        distribute: [{from: 'us-*', to: {'us-west/*': 100}}]
",
            "not a locality pattern",
        ),
        (
            "      localityLbSetting:
        failover: [{from: us-west, to: us-west}]
",
            "to itself",
        ),
    ];
    for (lb, part) in cases {
        let (compiled, _) = compile_text(&located(lb, "TCP"));
        let message = single_error(
            &compiled,
            "DestinationRule default/api",
            &compiled.errors[0].field.clone().unwrap_or_default(),
        );
        assert!(message.contains(part), "{message}");
        assert!(
            compiled.errors[0]
                .field
                .as_deref()
                .is_some_and(|f| f.starts_with("spec.trafficPolicy.loadBalancer.localityLbSetting")),
            "{:?}",
            compiled.errors[0].field
        );
    }
    // failoverPriority compares client labels: noted, not applied.
    let by_labels = located(
        "      localityLbSetting:
        failoverPriority: [topology.istio.io/network]
",
        "TCP",
    );
    let compiled = at(&by_labels, Some("us-west/zone1"));
    assert!(
        has_note(&compiled, "failoverPriority is not applied"),
        "{:?}",
        compiled.notes
    );
    assert_eq!(backends(&compiled, "10.0.0.1", 80).len(), 5);
}

/// With outlier detection, the proxy's clusters get Istio's locality failover priorities;
/// the kernel's table keeps every endpoint (it has no health to fail over on).
#[test]
fn outlier_detection_gives_proxy_endpoints_their_failover_priority() {
    let policy = "      simple: RANDOM
    outlierDetection: {consecutive5xxErrors: 5}
";
    let text = located(policy, "HTTP");
    let priorities = |compiled: &Compiled| -> Vec<(String, u32)> {
        first_cluster_of(compiled)
            .endpoints
            .iter()
            .map(|e| (e.address.to_string(), e.priority))
            .collect()
    };
    let compiled = at(&text, Some("us-west/zone1/sub1"));
    assert_eq!(
        priorities(&compiled),
        [
            ("10.1.0.1".to_string(), 0),
            ("10.1.0.2".to_string(), 1),
            ("10.1.0.3".to_string(), 2),
            ("10.1.0.4".to_string(), 3),
            ("10.1.0.5".to_string(), 3),
        ]
    );
    assert_eq!(backends(&compiled, "10.0.0.1", 80).len(), 5);
    // No node locality, or no outlier detection: one level.
    let flat = at(&text, None);
    assert!(priorities(&flat).iter().all(|(_, p)| *p == 0));
    let without = at(
        &located("      simple: RANDOM\n", "HTTP"),
        Some("us-west/zone1/sub1"),
    );
    assert!(
        without
            .plan
            .get(ip("10.0.0.1"), 80, Protocol::Tcp)
            .unwrap()
            .http
            .is_none()
    );
}

/// A `NONE` host has no endpoints to weigh (Istio's `ORIGINAL_DST` cluster has no load
/// assignment): a distribution in its DestinationRule leaves its passthrough share whole,
/// for its own range and for a route that sends part of another service to it.
#[test]
fn a_distribution_leaves_a_none_host_passing_through() {
    let none = service_entry(
        "db",
        "  hosts: [db.internal]
  addresses: [10.2.0.0/16]
  ports: [{number: 80, name: tcp, protocol: TCP}]
  resolution: NONE
",
    );
    let rule = resource(
        "DestinationRule",
        "db",
        &format!(
            "  host: db.internal
  trafficPolicy:
    loadBalancer:
{DISTRIBUTE}"
        ),
    );
    let vs = resource(
        "VirtualService",
        "api",
        "  hosts: [api.example.com]
  tcp:
  - route:
    - {destination: {host: api.example.com}, weight: 50}
    - {destination: {host: db.internal}, weight: 50}
",
    );
    let text = format!("{}{none}{rule}{vs}", located(DISTRIBUTE, "TCP"));
    let compiled = at(&text, Some("us-west/zone1/sub7"));
    let range = ServiceKey::range("10.2.0.0/16".parse().unwrap(), 80, Protocol::Tcp);
    let own = compiled.plan.service(&range).unwrap();
    assert!(
        own.backends.len() == 1 && own.backends[0].is_passthrough(),
        "{:#?}",
        own.backends
    );
    let routed = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    let passthrough: u32 = routed
        .backends
        .iter()
        .filter(|b| b.is_passthrough())
        .map(|b| b.weight)
        .sum();
    assert_eq!(passthrough, 500_000, "{:#?}", routed.backends);
}
