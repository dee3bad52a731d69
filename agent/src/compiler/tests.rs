//! End-to-end tests of the compiler: YAML text in, plan and errors out.

use std::net::IpAddr;

use super::*;
use crate::config::ConfigError;
use crate::sources::{Loaded, load_embedded, parse_str};

/// Parses `text` as file `t.yaml` and compiles it; parse and compile errors together.
fn compile_text(text: &str) -> (Compiled, Loaded) {
    let loaded = parse_str("t.yaml", text);
    let mut compiled = compile(&loaded.resources);
    let mut errors = loaded.errors.clone();
    errors.append(&mut compiled.errors);
    compiled.errors = errors;
    (compiled, loaded)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A ServiceEntry named `name` with the given spec lines (indented under `spec:`).
fn service_entry(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

const GOOD_SPEC: &str = "  hosts: [web.example.com]
  addresses: [10.0.0.1]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - address: 10.1.0.1
  - address: 10.1.0.2
";

/// Asserts exactly one error, naming file, resource and field; returns its message.
fn single_error(compiled: &Compiled, resource: &str, field: &str) -> String {
    assert_eq!(compiled.errors.len(), 1, "{:#?}", compiled.errors);
    let ConfigError {
        file,
        resource: r,
        field: f,
        message,
    } = &compiled.errors[0];
    assert_eq!(file, "t.yaml");
    assert_eq!(r.as_deref(), Some(resource));
    assert_eq!(f.as_deref(), Some(field));
    message.clone()
}

#[test]
fn examples_compile_to_the_expected_plan() {
    let loaded = load_embedded();
    let compiled = compile(&loaded.resources);
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);

    let keys: Vec<_> = compiled
        .plan
        .services
        .iter()
        .map(|s| {
            (
                s.vip,
                s.port,
                s.protocol,
                s.host.as_str(),
                s.resource.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            (
                ip("127.100.0.1"),
                9080,
                Protocol::Tcp,
                "reviews.default.svc.cluster.local",
                "ServiceEntry default/reviews"
            ),
            (
                ip("127.100.0.2"),
                9080,
                Protocol::Tcp,
                "ratings.default.svc.cluster.local",
                "ServiceEntry default/ratings"
            ),
            (
                ip("127.100.0.3"),
                9080,
                Protocol::Tcp,
                "details.default.svc.cluster.local",
                "ServiceEntry default/details"
            ),
        ]
    );

    let reviews = compiled
        .plan
        .get(ip("127.100.0.1"), 9080, Protocol::Tcp)
        .unwrap();
    let backends: Vec<_> = reviews
        .backends
        .iter()
        .map(|b| (b.address, b.port, b.weight, b.subsets.clone()))
        .collect();
    assert_eq!(
        backends,
        [
            (ip("127.0.1.1"), 9080, 1, vec!["v1".to_string()]),
            (ip("127.0.1.2"), 9080, 1, vec!["v2".to_string()]),
            (ip("127.0.1.3"), 9080, 1, vec!["v3".to_string()]),
        ]
    );
    assert_eq!(reviews.backends[1].labels["app"], "reviews");

    let ratings = compiled
        .plan
        .get(ip("127.100.0.2"), 9080, Protocol::Tcp)
        .unwrap();
    let addresses: Vec<_> = ratings.backends.iter().map(|b| b.address).collect();
    assert_eq!(addresses, [ip("127.0.2.1"), ip("127.0.2.2")]);
    assert!(ratings.backends.iter().all(|b| b.subsets.is_empty()));

    let details = compiled
        .plan
        .get(ip("127.100.0.3"), 9080, Protocol::Tcp)
        .unwrap();
    assert_eq!(details.backends.len(), 1);
    assert_eq!(
        (details.backends[0].address, details.backends[0].port),
        (ip("127.0.3.1"), 9080)
    );

    // The VirtualService is read but not compiled yet, and the user is told.
    assert_eq!(
        compiled.notes,
        [
            "VirtualService default/reviews: routing rules are not compiled yet; connections are spread over all endpoints of the host"
        ]
    );

    let table = render(&compiled.plan);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 7, "{table}");
    assert!(lines[0].starts_with("SERVICE"), "{table}");
    let squash = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        squash(lines[1]),
        "127.100.0.1:9080 TCP reviews.default.svc.cluster.local 127.0.1.1:9080 33.3% v1 app=reviews,version=v1"
    );
    assert_eq!(
        squash(lines[3]),
        "127.0.1.3:9080 33.3% v3 app=reviews,version=v3"
    );
    assert_eq!(
        squash(lines[4]),
        "127.100.0.2:9080 TCP ratings.default.svc.cluster.local 127.0.2.1:9080 50.0% - app=ratings,version=v1"
    );
    assert_eq!(
        squash(lines[6]),
        "127.100.0.3:9080 TCP details.default.svc.cluster.local 127.0.3.1:9080 100.0% - app=details,version=v1"
    );
}

#[test]
fn endpoint_port_comes_from_ports_map_then_target_port_then_service_port() {
    let spec = "  hosts: [web.example.com]
  addresses: [10.0.0.1]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  - {number: 443, name: https, protocol: HTTPS}
  resolution: STATIC
  endpoints:
  - address: 10.1.0.1
    ports: {http: 9090}
  - address: 10.1.0.2
";
    let (compiled, _) = compile_text(&service_entry("web", spec));
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    let http = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    let ports: Vec<_> = http.backends.iter().map(|b| b.port).collect();
    assert_eq!(ports, [9090, 8080]);
    let https = compiled
        .plan
        .get(ip("10.0.0.1"), 443, Protocol::Tcp)
        .unwrap();
    let ports: Vec<_> = https.backends.iter().map(|b| b.port).collect();
    assert_eq!(ports, [443, 443]);
}

#[test]
fn every_address_and_port_is_a_service_and_udp_is_kept_apart() {
    let spec = "  hosts: [dns.example.com]
  addresses: [10.0.0.53, 'fd00::53']
  ports:
  - {number: 53, name: dns-udp, protocol: UDP}
  - {number: 53, name: dns-tcp, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 10.1.0.53
  - address: 'fd00:1::53'
";
    let (compiled, _) = compile_text(&service_entry("dns", spec));
    // Port 53 twice is a duplicate number for Istio, whatever the protocol.
    let message = single_error(
        &compiled,
        "ServiceEntry default/dns",
        "spec.ports[1].number",
    );
    assert!(
        message.contains("already listed at spec.ports[0]"),
        "{message}"
    );

    let spec = spec.replace("{number: 53, name: dns-tcp", "{number: 5353, name: dns-tcp");
    let (compiled, _) = compile_text(&service_entry("dns", &spec));
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    let keys: Vec<_> = compiled
        .plan
        .services
        .iter()
        .map(|s| (s.vip, s.port, s.protocol))
        .collect();
    assert_eq!(
        keys,
        [
            (ip("10.0.0.53"), 53, Protocol::Udp),
            (ip("10.0.0.53"), 5353, Protocol::Tcp),
            (ip("fd00::53"), 53, Protocol::Udp),
            (ip("fd00::53"), 5353, Protocol::Tcp),
        ]
    );
    // Each VIP keeps only the endpoints of its own address family.
    for service in &compiled.plan.services {
        assert_eq!(service.backends.len(), 1);
        assert_eq!(service.backends[0].address.is_ipv4(), service.vip.is_ipv4());
    }
    assert!(
        compiled.notes.iter().any(|n| n.contains("other family")),
        "{:?}",
        compiled.notes
    );
}

#[test]
fn service_entry_without_addresses_is_rejected() {
    let spec = GOOD_SPEC.replace("  addresses: [10.0.0.1]\n", "");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(&compiled, "ServiceEntry default/web", "spec.addresses");
    assert!(message.contains("virtual IP"), "{message}");
    assert!(compiled.plan.services.is_empty());
}

#[test]
fn endpoint_with_a_bad_ip_is_rejected() {
    let spec = GOOD_SPEC.replace("address: 10.1.0.2", "address: 10.1.0.300");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(
        &compiled,
        "ServiceEntry default/web",
        "spec.endpoints[1].address",
    );
    assert!(message.contains("only IP endpoints"), "{message}");
    assert!(compiled.plan.services.is_empty(), "rejected whole");
}

#[test]
fn out_of_range_port_is_rejected() {
    let spec = GOOD_SPEC.replace("number: 80,", "number: 70000,");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(
        &compiled,
        "ServiceEntry default/web",
        "spec.ports[0].number",
    );
    assert!(message.contains("between 1 and 65535"), "{message}");

    let spec = GOOD_SPEC.replace("number: 80,", "number: 0,");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    single_error(
        &compiled,
        "ServiceEntry default/web",
        "spec.ports[0].number",
    );
}

#[test]
fn unknown_protocol_is_rejected() {
    let spec = GOOD_SPEC.replace("protocol: HTTP", "protocol: SCTP");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(
        &compiled,
        "ServiceEntry default/web",
        "spec.ports[0].protocol",
    );
    assert!(message.contains("\"SCTP\""), "{message}");
}

#[test]
fn non_numeric_port_is_a_type_error_at_its_path() {
    let spec = GOOD_SPEC.replace("number: 80,", "number: abc,");
    let (compiled, loaded) = compile_text(&service_entry("web", &spec));
    assert!(loaded.resources.is_empty());
    let message = single_error(
        &compiled,
        "ServiceEntry default/web",
        "spec.ports[0].number",
    );
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn unsupported_api_version_is_rejected() {
    let text =
        service_entry("web", GOOD_SPEC).replace("networking.istio.io/v1", "networking.istio.io/v2");
    let (compiled, _) = compile_text(&text);
    let message = single_error(&compiled, "ServiceEntry default/web", "apiVersion");
    assert!(message.contains("networking.istio.io/v2"), "{message}");
}

#[test]
fn missing_name_is_rejected() {
    let text = service_entry("web", GOOD_SPEC).replace("  name: web\n", "  labels: {a: b}\n");
    let (compiled, _) = compile_text(&text);
    single_error(&compiled, "ServiceEntry in document 1", "metadata.name");
}

#[test]
fn unknown_kind_is_a_warning_not_an_error() {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec: {{}}\n{}",
        service_entry("web", GOOD_SPEC)
    );
    let (compiled, loaded) = compile_text(&text);
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(
        loaded.warnings[0].resource.as_deref(),
        Some("Gateway default/gw")
    );
    assert!(loaded.warnings[0].message.contains("skipped"));
    assert_eq!(compiled.plan.services.len(), 1);
}

#[test]
fn unset_or_other_resolution_is_rejected() {
    let spec = GOOD_SPEC.replace("  resolution: STATIC\n", "");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(&compiled, "ServiceEntry default/web", "spec.resolution");
    assert!(message.contains("only STATIC is supported"), "{message}");

    let spec = GOOD_SPEC.replace("resolution: STATIC", "resolution: DNS");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(&compiled, "ServiceEntry default/web", "spec.resolution");
    assert!(message.contains("DNS is not supported"), "{message}");
}

#[test]
fn cidr_address_and_missing_hosts_are_rejected() {
    let spec = GOOD_SPEC.replace("[10.0.0.1]", "[10.0.0.0/24]");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(&compiled, "ServiceEntry default/web", "spec.addresses[0]");
    assert!(
        message.contains("CIDR addresses are not supported yet"),
        "{message}"
    );

    let spec = GOOD_SPEC.replace("  hosts: [web.example.com]\n", "");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    single_error(&compiled, "ServiceEntry default/web", "spec.hosts");
}

#[test]
fn endpoint_port_name_must_exist() {
    let spec = GOOD_SPEC.replace(
        "address: 10.1.0.2",
        "address: 10.1.0.2\n    ports: {web: 8080}",
    );
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(
        &compiled,
        "ServiceEntry default/web",
        "spec.endpoints[1].ports.web",
    );
    assert!(message.contains("http"), "{message}");
}

#[test]
fn several_errors_of_one_resource_are_all_reported() {
    let spec = GOOD_SPEC
        .replace("protocol: HTTP", "protocol: SCTP")
        .replace("address: 10.1.0.1", "address: db.local");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let fields: Vec<_> = compiled
        .errors
        .iter()
        .map(|e| e.field.clone().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["spec.ports[0].protocol", "spec.endpoints[0].address"]
    );
}

#[test]
fn a_bad_resource_does_not_remove_a_good_one() {
    let bad = GOOD_SPEC
        .replace("10.0.0.1", "10.0.0.2")
        .replace("address: 10.1.0.2", "address: nope");
    let text = format!(
        "{}{}",
        service_entry("bad", &bad),
        service_entry("good", GOOD_SPEC)
    );
    let (compiled, _) = compile_text(&text);
    single_error(
        &compiled,
        "ServiceEntry default/bad",
        "spec.endpoints[1].address",
    );
    assert_eq!(compiled.plan.services.len(), 1);
    assert_eq!(
        compiled.plan.services[0].resource,
        "ServiceEntry default/good"
    );

    // A type error in one document leaves the others too.
    let broken = GOOD_SPEC.replace("number: 80,", "number: [80],");
    let text = format!(
        "{}{}",
        service_entry("broken", &broken),
        service_entry("good", GOOD_SPEC)
    );
    let (compiled, _) = compile_text(&text);
    single_error(
        &compiled,
        "ServiceEntry default/broken",
        "spec.ports[0].number",
    );
    assert_eq!(compiled.plan.services.len(), 1);
}

#[test]
fn duplicate_vip_claim_goes_to_the_first() {
    let second = GOOD_SPEC
        .replace(
            "  addresses: [10.0.0.1]",
            "  addresses: [10.0.0.9, 10.0.0.1]",
        )
        .replace("web.example.com", "other.example.com");
    let text = format!(
        "{}{}",
        service_entry("first", GOOD_SPEC),
        service_entry("second", &second)
    );
    let (compiled, _) = compile_text(&text);
    let message = single_error(
        &compiled,
        "ServiceEntry default/second",
        "spec.addresses[1]",
    );
    assert!(message.contains("10.0.0.1:80/TCP"), "{message}");
    assert!(message.contains("ServiceEntry default/first"), "{message}");
    // The second is rejected whole, including its unclaimed address.
    assert_eq!(compiled.plan.services.len(), 1);
    assert_eq!(
        compiled.plan.services[0].resource,
        "ServiceEntry default/first"
    );
}

#[test]
fn duplicate_resource_names_keep_the_first() {
    let text = format!(
        "{}{}",
        service_entry("web", GOOD_SPEC),
        service_entry("web", GOOD_SPEC)
    );
    let (compiled, _) = compile_text(&text);
    let message = single_error(&compiled, "ServiceEntry default/web", "metadata.name");
    assert!(
        message.contains("already defined in t.yaml (document 1)"),
        "{message}"
    );
    assert_eq!(compiled.plan.services.len(), 1);
}

#[test]
fn destination_rules_resolve_short_names_in_their_namespace() {
    let rule = |namespace: &str, host: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r-{namespace}, namespace: {namespace}}}\nspec:\n  host: {host}\n  subsets:\n  - {{name: one, labels: {{version: v1}}}}\n  - {{name: all}}\n"
        )
    };
    let spec = "  hosts: [reviews.shop.svc.cluster.local]
  addresses: [10.0.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
";
    // `reviews` in namespace `default` is another host; in `shop` it is this one.
    let text = format!(
        "{}{}{}",
        service_entry("reviews", spec),
        rule("default", "reviews"),
        rule("shop", "reviews")
    );
    let (compiled, _) = compile_text(&text);
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    let subsets: Vec<_> = compiled.plan.services[0]
        .backends
        .iter()
        .map(|b| b.subsets.clone())
        .collect();
    assert_eq!(subsets, [vec!["one", "all"], vec!["all"]]);
    assert!(
        compiled.notes.iter().any(|n| n.starts_with("DestinationRule default/r-default: host reviews.default.svc.cluster.local matches no service")),
        "{:?}",
        compiled.notes
    );
}

#[test]
fn invalid_destination_rule_is_rejected() {
    let text = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: r
  subsets:
  - {name: v1}
  - {name: v1}
";
    let (compiled, _) = compile_text(text);
    let message = single_error(
        &compiled,
        "DestinationRule default/r",
        "spec.subsets[1].name",
    );
    assert!(message.contains("already defined"), "{message}");
}
