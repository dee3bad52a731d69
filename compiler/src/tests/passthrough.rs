//! ServiceEntries with `resolution: NONE` (connects go on to the address dialled) and CIDR
//! addresses (a service for every address of a range), as Istio serves them.

use super::*;

/// A range of external databases with no endpoints: NONE, as Istio's egress docs write it.
const DATABASES: &str = "  hosts: [db.internal]
  addresses: [10.1.0.0/16]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  location: MESH_EXTERNAL
  resolution: NONE
";

/// A STATIC service at one VIP with two endpoints.
const CACHE: &str = "  hosts: [cache.internal]
  addresses: [10.9.0.1]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.2.0.1}
  - {address: 10.2.0.2}
";

/// The databases' range, the cache, and a VirtualService `name` with `spec`.
fn databases_and_cache_with(name: &str, spec: &str) -> String {
    format!(
        "{}{}{}",
        service_entry("db", DATABASES),
        service_entry("cache", CACHE),
        resource("VirtualService", name, spec)
    )
}

fn range(net: &str, port: u16) -> ServiceKey {
    ServiceKey::range(net.parse().unwrap(), port, Protocol::Tcp)
}

#[test]
fn a_none_range_is_one_service_whose_connects_go_to_the_address_dialled() {
    let compiled = compile_ok(&service_entry("db", DATABASES));
    let service = compiled
        .plan
        .service(&range("10.1.0.0/16", 5432))
        .unwrap_or_else(|| panic!("{:#?}", compiled.plan));
    assert_eq!(service.key.to_string(), "10.1.0.0/16:5432/TCP");
    assert_eq!(service.backends.len(), 1);
    assert!(service.backends[0].is_passthrough());
    assert_eq!(service.backends[0].weight, WEIGHT_SCALE);
    assert_eq!(service.decision, Decision::Kernel);
    assert!(
        has_note(&compiled, "resolution NONE"),
        "{:#?}",
        compiled.notes
    );
    let json = serde_json::to_string(&compiled.plan).unwrap();
    assert!(json.contains(r#""vip":"10.1.0.0/16""#), "{json}");
    let text = vsteer_plan::render(&compiled.plan);
    assert!(text.contains("10.1.0.0/16:5432 TCP db.internal"), "{text}");
    assert!(text.contains("(address dialled)"), "{text}");
}

#[test]
fn unset_resolution_is_none_and_none_takes_no_endpoints() {
    let unset = DATABASES.replace("  resolution: NONE\n", "");
    let compiled = compile_ok(&service_entry("db", &unset));
    assert!(
        compiled
            .plan
            .service(&range("10.1.0.0/16", 5432))
            .unwrap()
            .backends[0]
            .is_passthrough()
    );
    assert!(
        has_note(&compiled, "not set; Istio's default"),
        "{:#?}",
        compiled.notes
    );

    // Istio's validation: "no endpoints should be provided for resolution type none".
    let with_endpoints = format!("{unset}  endpoints: [{{address: 10.1.0.5}}]\n");
    let (compiled, _) = compile_text(&service_entry("db", &with_endpoints));
    let message = single_error(&compiled, "ServiceEntry default/db", "spec.endpoints");
    assert!(
        message.contains("no endpoints should be provided"),
        "{message}"
    );
    assert!(
        message.contains("not set, which Istio reads as NONE"),
        "{message}"
    );
    assert!(compiled.plan.is_empty());
}

#[test]
fn a_static_range_sends_every_address_of_it_to_the_endpoints() {
    let spec = CACHE.replace("[10.9.0.1]", "['10.9.0.0/24', 'fd00:9::/64', 10.8.0.7/32]");
    let compiled = compile_ok(&service_entry("cache", &spec));
    let service = compiled.plan.service(&range("10.9.0.0/24", 5432)).unwrap();
    let to: Vec<String> = service
        .backends
        .iter()
        .map(|b| format!("{}:{}", b.address, b.port))
        .collect();
    assert_eq!(to, ["10.2.0.1:5432", "10.2.0.2:5432"]);
    // A /32 is its one address.
    assert!(
        compiled
            .plan
            .get(ip("10.8.0.7"), 5432, Protocol::Tcp)
            .is_some()
    );
    // An IPv6 range with only IPv4 endpoints: no backend of its family.
    let v6 = compiled.plan.service(&range("fd00:9::/64", 5432)).unwrap();
    assert!(v6.backends.is_empty());
}

#[test]
fn one_range_spelled_twice_is_a_duplicate_and_dns_takes_no_range() {
    let spec = DATABASES.replace("[10.1.0.0/16]", "[10.1.0.0/16, 10.1.7.7/16]");
    let (compiled, _) = compile_text(&service_entry("db", &spec));
    let message = single_error(&compiled, "ServiceEntry default/db", "spec.addresses[1]");
    assert!(
        message.contains("already listed at spec.addresses[0]"),
        "{message}"
    );

    let spec = DATABASES.replace("resolution: NONE", "resolution: DNS");
    let (compiled, _) = compile_text(&service_entry("db", &spec));
    let message = single_error(&compiled, "ServiceEntry default/db", "spec.addresses[0]");
    assert!(message.contains("only with NONE or STATIC"), "{message}");
}

#[test]
fn several_hosts_on_a_tcp_port_are_fine_with_none() {
    let spec = DATABASES.replace("[db.internal]", "[db.internal, db2.internal]");
    let compiled = compile_ok(&service_entry("db", &spec));
    assert!(compiled.plan.service(&range("10.1.0.0/16", 5432)).is_some());
    let spec = CACHE.replace("[cache.internal]", "[cache.internal, cache2.internal]");
    let (compiled, _) = compile_text(&service_entry("cache", &spec));
    single_error(&compiled, "ServiceEntry default/cache", "spec.hosts");
}

#[test]
fn rules_of_a_none_range_apply_and_its_own_host_passes_through() {
    // 80% of connects to the range to the cache's endpoints, 20% where they were dialled.
    let text = databases_and_cache_with(
        "db",
        "  hosts: [db.internal]
  tcp:
  - route:
    - destination: {host: cache.internal}
      weight: 80
    - destination: {host: db.internal}
      weight: 20
",
    );
    let compiled = compile_ok(&text);
    let service = compiled.plan.service(&range("10.1.0.0/16", 5432)).unwrap();
    let shares: Vec<(String, u32)> = service
        .backends
        .iter()
        .map(|b| {
            let to = if b.is_passthrough() {
                "dialled".to_string()
            } else {
                format!("{}:{}", b.address, b.port)
            };
            (to, b.weight)
        })
        .collect();
    let mut shares = shares;
    shares.sort();
    assert_eq!(
        shares,
        [
            ("10.2.0.1:5432".to_string(), 400_000),
            ("10.2.0.2:5432".to_string(), 400_000),
            ("dialled".to_string(), 200_000),
        ]
    );
    assert_eq!(route(&compiled, "10.9.0.1", 5432), None);
}

#[test]
fn a_route_to_a_none_host_passes_through_from_an_exact_vip() {
    let text = databases_and_cache_with(
        "cache",
        "  hosts: [cache.internal]
  tcp:
  - route:
    - destination: {host: cache.internal}
      weight: 70
    - destination: {host: db.internal}
      weight: 30
",
    );
    let compiled = compile_ok(&text);
    let service = compiled
        .plan
        .get(ip("10.9.0.1"), 5432, Protocol::Tcp)
        .unwrap();
    let passthrough: u32 = service
        .backends
        .iter()
        .filter(|b| b.is_passthrough())
        .map(|b| b.weight)
        .sum();
    assert_eq!(passthrough, 300_000);
}

#[test]
fn l7_rules_of_a_range_are_served_at_connect_time_and_said_so() {
    let http = "  hosts: [web.internal]
  addresses: [10.3.0.0/16]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.4.0.1, labels: {version: v1}}
  - {address: 10.4.0.2, labels: {version: v2}}
";
    let text = format!(
        "{}{}",
        service_entry("web", http),
        resource(
            "VirtualService",
            "web",
            "  hosts: [web.internal]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: web.internal}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
  - route: [{destination: {host: web.internal}}]
"
        )
    );
    let compiled = compile_ok(&text);
    let service = compiled.plan.service(&ServiceKey::range(
        "10.3.0.0/16".parse().unwrap(),
        80,
        Protocol::Tcp,
    ));
    let service = service.unwrap();
    assert_eq!(service.decision, Decision::Kernel);
    assert_eq!(service.backends.len(), 2);
    assert!(
        has_note(&compiled, "10.3.0.0/16 is a CIDR range"),
        "{:#?}",
        compiled.notes
    );
}

#[test]
fn overlapping_ranges_of_two_entries_are_two_services() {
    let inner = DATABASES
        .replace("[10.1.0.0/16]", "[10.1.2.0/24]")
        .replace("[db.internal]", "[db-east.internal]");
    let text = format!(
        "{}{}",
        service_entry("db", DATABASES),
        service_entry("db-east", &inner)
    );
    let compiled = compile_ok(&text);
    assert!(compiled.plan.service(&range("10.1.0.0/16", 5432)).is_some());
    assert!(compiled.plan.service(&range("10.1.2.0/24", 5432)).is_some());
}

#[test]
fn keys_cover_their_addresses() {
    let key = range("10.1.0.0/16", 80);
    assert!(key.covers(ip("10.1.255.3")));
    assert!(!key.covers(ip("10.2.0.1")));
    let exact = ServiceKey::new(ip("10.1.0.0"), 80, Protocol::Tcp);
    assert!(exact.covers(ip("10.1.0.0")) && !exact.covers(ip("10.1.0.1")));
    assert_ne!(exact, key);
    assert_eq!(range("fd00::/64", 80).to_string(), "[fd00::/64]:80/TCP");
    assert_eq!(
        range("10.1.0.5/32", 80),
        ServiceKey::new(ip("10.1.0.5"), 80, Protocol::Tcp)
    );
}

#[test]
fn a_subset_of_a_none_host_passes_through_and_an_undefined_one_is_refused() {
    // Istio builds a subset cluster of a NONE host as ORIGINAL_DST, as the host's own: no
    // endpoints to select. A subset no DestinationRule defines has no cluster: 503.
    let text = format!(
        "{}{}{}",
        service_entry("db", DATABASES),
        resource(
            "DestinationRule",
            "db",
            "  host: db.internal
  subsets: [{name: v1, labels: {version: v1}}]
"
        ),
        resource(
            "VirtualService",
            "db",
            "  hosts: [db.internal]
  tcp:
  - route:
    - {destination: {host: db.internal, subset: v1}, weight: 60}
    - {destination: {host: db.internal, subset: v9}, weight: 40}
"
        )
    );
    let compiled = compile_ok(&text);
    let service = compiled.plan.service(&range("10.1.0.0/16", 5432)).unwrap();
    let weight_of = |passthrough: bool| -> u32 {
        service
            .backends
            .iter()
            .filter(|b| b.is_passthrough() == passthrough)
            .map(|b| b.weight)
            .sum()
    };
    assert_eq!(weight_of(true), 600_000, "{service:#?}");
    assert!(
        service.backends.iter().any(|b| b.is_refused()),
        "{service:#?}"
    );
    assert!(
        !has_note(&compiled, "subset v1 matches no endpoint"),
        "{:#?}",
        compiled.notes
    );
}

/// The VirtualService of the range: `destinationSubnets` of its first rule, then the cache.
fn subnet_rule(subnets: &str) -> String {
    databases_and_cache_with(
        "db",
        &format!(
            "  hosts: [db.internal]
  tcp:
  - match: [{{destinationSubnets: [{subnets}]}}]
    route: [{{destination: {{host: cache.internal}}}}]
  - route: [{{destination: {{host: db.internal}}}}]
"
        ),
    )
}

/// A range is one service at connect time, taken by a rule's subnet only when the subnet
/// is the range, as Envoy's most specific filter chain decides for Istio: a subnet inside
/// it (even one holding the network address) does not take it, and says so; a wider one
/// loses to the range's own chain (its later rules and default route), as in Istio.
#[test]
fn destination_subnets_take_a_range_only_when_they_are_the_range() {
    let rule_of = |subnets: &str| {
        let compiled = compile_ok(&subnet_rule(subnets));
        let service = compiled.plan.service(&range("10.1.0.0/16", 5432)).unwrap();
        let passthrough = service
            .backends
            .iter()
            .all(vsteer_plan::BackendPlan::is_passthrough);
        (passthrough, compiled.notes)
    };
    let split = |notes: &[String]| notes.iter().any(|n| n.contains("is part of the range"));
    for part in ["10.1.0.0/24", "10.1.0.0", "10.1.200.0/21"] {
        let (passthrough, notes) = rule_of(part);
        assert!(passthrough, "{part} took the whole range: {notes:#?}");
        assert!(
            notes.iter().any(|n| n.contains(&format!(
                "spec.tcp[0].match[0].destinationSubnets[0] {part} is part of the range of 10.1.0.0/16:5432/TCP"
            ))),
            "{part}: {notes:#?}"
        );
    }
    for whole in ["10.1.0.0/16", "10.1.77.0/16"] {
        let (passthrough, notes) = rule_of(whole);
        assert!(!passthrough, "{whole} did not take the range");
        assert!(!split(&notes), "{notes:#?}");
    }
    for other in ["10.0.0.0/8", "0.0.0.0/0", "10.2.0.0/16"] {
        let (passthrough, notes) = rule_of(other);
        assert!(passthrough, "{other} took the range");
        assert!(!split(&notes), "{notes:#?}");
    }
    // A block that takes the range by one subnet, or cannot apply (another port), says
    // nothing of its others.
    let (passthrough, notes) = rule_of("10.1.0.0/24, 10.1.0.0/16");
    assert!(!passthrough);
    assert!(!split(&notes), "{notes:#?}");
    let other_port = subnet_rule("10.1.0.0/24").replace(
        "match: [{destinationSubnets",
        "match: [{port: 9999, destinationSubnets",
    );
    let compiled = compile_ok(&other_port);
    assert!(!split(&compiled.notes), "{:#?}", compiled.notes);
}

/// A VirtualService host that is an IP address names that one address (Envoy's virtual
/// host domain is the address), never the range whose network address it happens to be.
#[test]
fn an_ip_host_names_one_address_not_a_range_that_starts_there() {
    let text = databases_and_cache_with(
        "by-ip",
        "  hosts: [10.1.0.0]
  tcp:
  - route: [{destination: {host: cache.internal}}]
",
    );
    let compiled = compile_ok(&text);
    let service = compiled.plan.service(&range("10.1.0.0/16", 5432)).unwrap();
    assert!(
        service
            .backends
            .iter()
            .all(vsteer_plan::BackendPlan::is_passthrough),
        "{:#?}",
        service
    );
    assert_eq!(service.route, None);
}

/// The cache with a DestinationRule whose `loadBalancer` is `lb` at the host, and a subset
/// `direct` whose own policy passes through, and the VirtualService `spec` for the cache.
fn cache_with_rule(host_lb: &str, spec: Option<&str>) -> String {
    let rule = resource(
        "DestinationRule",
        "cache",
        &format!(
            "  host: cache.internal
  trafficPolicy: {{loadBalancer: {{simple: {host_lb}}}}}
  subsets:
  - name: direct
    labels: {{}}
    trafficPolicy: {{loadBalancer: {{simple: PASSTHROUGH}}}}
"
        ),
    );
    let vs = spec.map_or(String::new(), |spec| {
        resource("VirtualService", "cache", spec)
    });
    format!("{}{rule}{vs}", service_entry("cache", CACHE))
}

fn shares(compiled: &Compiled) -> Vec<(String, u32)> {
    let service = compiled
        .plan
        .get(ip("10.9.0.1"), 5432, Protocol::Tcp)
        .unwrap();
    let mut shares: Vec<(String, u32)> = service
        .backends
        .iter()
        .map(|b| {
            let to = if b.is_passthrough() {
                "dialled".to_string()
            } else if b.is_refused() {
                "refused".to_string()
            } else {
                format!("{}:{}", b.address, b.port)
            };
            (to, b.weight)
        })
        .collect();
    shares.sort();
    shares
}

/// `loadBalancer.simple: PASSTHROUGH` is Istio's ORIGINAL_DST cluster: connects go on to the
/// address dialled, whatever the endpoints; on a subset, that subset's share only; a subset
/// no DestinationRule defines is still refused (Envoy: no cluster, 503).
#[test]
fn a_passthrough_load_balancer_sends_connects_to_the_address_dialled() {
    let compiled = compile_ok(&cache_with_rule("PASSTHROUGH", None));
    assert_eq!(shares(&compiled), [("dialled".to_string(), WEIGHT_SCALE)]);

    let split = "  hosts: [cache.internal]
  tcp:
  - route:
    - {destination: {host: cache.internal}, weight: 60}
    - {destination: {host: cache.internal, subset: direct}, weight: 40}
";
    let compiled = compile_ok(&cache_with_rule("ROUND_ROBIN", Some(split)));
    assert_eq!(
        shares(&compiled),
        [
            ("10.2.0.1:5432".to_string(), 300_000),
            ("10.2.0.2:5432".to_string(), 300_000),
            ("dialled".to_string(), 400_000),
        ]
    );
    let undefined = split.replace("subset: direct", "subset: nowhere");
    let (compiled, _) = compile_text(&cache_with_rule("PASSTHROUGH", Some(&undefined)));
    assert_eq!(
        shares(&compiled),
        [
            ("dialled".to_string(), 600_000),
            ("refused".to_string(), 400_000),
        ]
    );
}

/// A passthrough share balances nothing: the other destination's load balancer is the
/// service's, and a PASSTHROUGH subset that selects no endpoint is not said to be empty
/// (its ORIGINAL_DST cluster needs none).
#[test]
fn a_passthrough_share_neither_picks_the_load_balancer_nor_needs_endpoints() {
    let rule = resource(
        "DestinationRule",
        "cache",
        "  host: cache.internal
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
  subsets:
  - name: direct
    labels: {version: none}
    trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
",
    );
    let vs = resource(
        "VirtualService",
        "cache",
        "  hosts: [cache.internal]
  tcp:
  - route:
    - {destination: {host: cache.internal, subset: direct}, weight: 50}
    - {destination: {host: cache.internal}, weight: 50}
",
    );
    let compiled = compile_ok(&format!("{}{rule}{vs}", service_entry("cache", CACHE)));
    let service = compiled
        .plan
        .get(ip("10.9.0.1"), 5432, Protocol::Tcp)
        .unwrap();
    assert_eq!(
        service.load_balancer,
        vsteer_plan::LoadBalancer::SourceIpHash
    );
    assert_eq!(
        shares(&compiled),
        [
            ("10.2.0.1:5432".to_string(), 250_000),
            ("10.2.0.2:5432".to_string(), 250_000),
            ("dialled".to_string(), 500_000),
        ]
    );
    assert!(
        !has_note(&compiled, "matches no endpoint"),
        "{:#?}",
        compiled.notes
    );
}

/// HTTP rules that route to a PASSTHROUGH subset, where no rule takes every request: the
/// connect-time route has no backend, so the kernel would refuse every connection. The
/// proxy keeps the service; its rules to the passthrough subset answer 503 (the proxy has
/// no original-destination upstream), the others are served, and a note says so.
#[test]
fn http_rules_to_a_passthrough_subset_without_a_catch_all_stay_with_the_proxy() {
    let entry = service_entry(
        "web",
        "  hosts: [web.internal]
  addresses: [10.9.1.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.2.1.1, labels: {version: v1}}
",
    );
    let rule = resource(
        "DestinationRule",
        "web",
        "  host: web.internal
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: direct
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
",
    );
    let vs = resource(
        "VirtualService",
        "web",
        "  hosts: [web.internal]
  http:
  - match: [{headers: {x-user: {exact: jason}}}]
    route: [{destination: {host: web.internal, subset: direct}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web.internal, subset: v1}}]
",
    );
    let compiled = compile_ok(&format!("{entry}{rule}{vs}"));
    let service = compiled
        .plan
        .get(ip("10.9.1.1"), 80, Protocol::Tcp)
        .unwrap();
    assert!(
        matches!(service.decision, Decision::Proxy { .. }),
        "{:?}",
        service.decision
    );
    let table = service.http.as_ref().unwrap();
    let endpoints = |subset: &str| {
        table
            .clusters
            .iter()
            .find(|c| c.subset.as_deref() == Some(subset))
            .unwrap()
            .endpoints
            .len()
    };
    assert_eq!(endpoints("direct"), 0, "answers 503");
    assert_eq!(endpoints("v1"), 1);
    assert!(
        has_note(&compiled, "answers 503 where they route to web.internal"),
        "{:#?}",
        compiled.notes
    );

    // With a rule that takes every request, the connect-time route serves the service.
    let catch_all = vs.replace("  - match: [{uri: {prefix: /api}}]\n", "  - \n");
    let compiled = compile_ok(&format!("{entry}{rule}{catch_all}"));
    let service = compiled
        .plan
        .get(ip("10.9.1.1"), 80, Protocol::Tcp)
        .unwrap();
    assert_eq!(service.decision, Decision::Kernel);
}
