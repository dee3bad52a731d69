//! ServiceEntries with DNS resolution: the addresses the agent's resolver found are the
//! endpoints, as Envoy's strict (DNS) and logical (DNS_ROUND_ROBIN) clusters take them.

use std::collections::BTreeMap;
use std::sync::Arc;

use vsteer_model::ResourceSpec;
use vsteer_model::istio::DnsAnswers;

use super::*;

/// Compiles `text` with `answers` (name, addresses) as the resolver's; `None`: unresolved,
/// as `vsteer plan` compiles.
fn compile_resolved(text: &str, answers: Option<&[(&str, &[&str])]>) -> Compiled {
    let mut loaded = parse_str("t.yaml", text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let answers = answers.map(|answers| {
        let table: BTreeMap<Box<str>, Arc<[IpAddr]>> = answers
            .iter()
            .map(|(name, ips)| (Box::from(*name), ips.iter().map(|a| ip(a)).collect()))
            .collect();
        Arc::new(DnsAnswers(table))
    });
    for resource in &mut loaded.resources {
        if let ResourceSpec::ServiceEntry(spec) = &mut resource.spec {
            spec.resolved = answers.clone();
        }
    }
    compile(&loaded.resources, &Plan::default())
}

const EXTERNAL: &str = "  hosts: [api.example.com]
  addresses: [10.0.0.1]
  ports: [{number: 443, name: tls, protocol: TLS, targetPort: 8443}]
  resolution: DNS
";

#[test]
fn each_address_of_an_endpoint_name_is_an_endpoint_with_its_labels_and_weight() {
    let spec = format!(
        "{EXTERNAL}  endpoints:
  - {{address: eu.api.example.com, labels: {{region: eu}}, weight: 2}}
  - {{address: 10.1.0.9}}
"
    );
    let compiled = compile_resolved(
        &service_entry("api", &spec),
        // Out of order, with an address of the other family and one twice.
        Some(&[(
            "eu.api.example.com",
            &["10.2.0.2", "fd00::1", "10.2.0.1", "10.2.0.2"],
        )]),
    );
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    // Weights 2 + 2 + 1 of 5: each resolved address keeps its endpoint's weight.
    assert_eq!(
        backends(&compiled, "10.0.0.1", 443),
        expect(&[
            ("10.1.0.9:8443", 200_000),
            ("10.2.0.1:8443", 400_000),
            ("10.2.0.2:8443", 400_000),
        ])
    );
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 443, Protocol::Tcp)
        .unwrap();
    let regions: Vec<Option<&str>> = service
        .backends
        .iter()
        .map(|b| b.labels.get("region"))
        .collect();
    assert_eq!(regions, [None, Some("eu"), Some("eu")]);
}

#[test]
fn a_rotated_answer_compiles_to_the_same_plan() {
    let spec = format!("{EXTERNAL}  endpoints: [{{address: lb.example.com}}]\n");
    let text = service_entry("api", &spec);
    let first = compile_resolved(
        &text,
        Some(&[("lb.example.com", &["10.2.0.1", "10.2.0.2", "10.2.0.3"])]),
    );
    let rotated = compile_resolved(
        &text,
        Some(&[("lb.example.com", &["10.2.0.3", "10.2.0.1", "10.2.0.2"])]),
    );
    assert_eq!(first.plan, rotated.plan);
    assert_eq!(backends(&first, "10.0.0.1", 443).len(), 3);
}

/// Istio makes each host of such an entry a service of its own, whose endpoints are that
/// host's addresses: a route to one host never reaches another's.
#[test]
fn without_endpoints_each_host_is_resolved_into_its_own_endpoints() {
    let spec = "  hosts: [api.example.com, api.example.org]
  addresses: [10.0.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
";
    let vs = resource(
        "VirtualService",
        "org",
        "  hosts: [api.example.org]
  http:
  - match: [{headers: {x-org: {exact: '1'}}}]
    route: [{destination: {host: api.example.org}}]
",
    );
    let compiled = compile_resolved(
        &format!("{}{vs}", service_entry("api", spec)),
        Some(&[
            ("api.example.com", &["10.2.0.1"]),
            ("api.example.org", &["10.3.0.1", "10.3.0.2"]),
        ]),
    );
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    let table = service.http.as_ref().expect("a route table");
    let endpoints = |host: &str| -> Vec<String> {
        let cluster = table
            .clusters
            .iter()
            .find(|c| &*c.host == host)
            .unwrap_or_else(|| panic!("no cluster of {host}: {:?}", table.clusters));
        cluster
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.address, e.port))
            .collect()
    };
    assert_eq!(endpoints("api.example.org"), ["10.3.0.1:80", "10.3.0.2:80"]);
    // Without a VirtualService the VIP's own route is the first host's: its addresses only.
    let alone = compile_resolved(
        &service_entry("api", spec),
        Some(&[
            ("api.example.com", &["10.2.0.1"]),
            ("api.example.org", &["10.3.0.1", "10.3.0.2"]),
        ]),
    );
    assert_eq!(
        backends(&alone, "10.0.0.1", 80),
        expect(&[("10.2.0.1:80", WEIGHT_SCALE)])
    );
}

/// Envoy's logical DNS cluster connects to the first address of the latest answer.
#[test]
fn dns_round_robin_takes_the_first_address_of_each_family() {
    let spec = EXTERNAL
        .replace("resolution: DNS", "resolution: DNS_ROUND_ROBIN")
        .replace("[10.0.0.1]", "[10.0.0.1, 'fd00::10']");
    let compiled = compile_resolved(
        &service_entry("api", &spec),
        Some(&[(
            "api.example.com",
            &["10.2.0.7", "fd00::7", "10.2.0.1", "fd00::1"],
        )]),
    );
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    assert_eq!(
        backends(&compiled, "10.0.0.1", 443),
        expect(&[("10.2.0.7:8443", WEIGHT_SCALE)])
    );
    assert_eq!(
        backends(&compiled, "fd00::10", 443),
        expect(&[("[fd00::7]:8443", WEIGHT_SCALE)])
    );
}

#[test]
fn a_name_not_resolved_yet_or_without_address_has_no_endpoints_and_a_note() {
    let spec = format!(
        "{EXTERNAL}  endpoints: [{{address: a.example.com}}, {{address: b.example.com}}, {{address: 10.1.0.9}}]\n"
    );
    let text = service_entry("api", &spec);
    // a: NXDOMAIN (no addresses); b: no answer yet.
    let compiled = compile_resolved(&text, Some(&[("a.example.com", &[])]));
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    assert_eq!(
        backends(&compiled, "10.0.0.1", 443),
        expect(&[("10.1.0.9:8443", WEIGHT_SCALE)])
    );
    assert!(
        has_note(
            &compiled,
            "ServiceEntry default/api: resolution DNS: b.example.com not resolved (no answer from DNS yet"
        ),
        "{:?}",
        compiled.notes
    );
    assert!(
        has_note(&compiled, "a.example.com resolved to no address"),
        "{:?}",
        compiled.notes
    );
    // `vsteer plan` does not resolve: it says so.
    let unresolved = compile_resolved(&text, None);
    assert!(
        has_note(
            &unresolved,
            "a.example.com, b.example.com not resolved (names are resolved by a running agent"
        ),
        "{:?}",
        unresolved.notes
    );
}

/// Istio's validation of DNS entries: every rejection names its field.
#[test]
fn dns_entries_are_validated_as_istio_does() {
    let cases = [
        (
            EXTERNAL.replace("resolution: DNS", "resolution: DNS_ROUND_ROBIN")
                + "  endpoints: [{address: a.example.com}, {address: b.example.com}]\n",
            "spec.endpoints",
            "at most one endpoint (2 listed)",
        ),
        (
            EXTERNAL.replace("[api.example.com]", "['*.example.com']"),
            "spec.hosts[0]",
            "each must be a DNS name without wildcards",
        ),
        (
            format!("{EXTERNAL}  endpoints: [{{address: 'not a name'}}]\n"),
            "spec.endpoints[0].address",
            "neither an IP address nor a DNS name",
        ),
        (
            EXTERNAL.replace("resolution: DNS", "resolution: STATIC")
                + "  endpoints: [{address: a.example.com}]\n",
            "spec.endpoints[0].address",
            "only IP endpoints are supported with STATIC resolution",
        ),
        (
            EXTERNAL.replace("[10.0.0.1]", "[10.0.0.1/32]"),
            "spec.addresses[0]",
            "CIDR addresses are allowed only with NONE or STATIC",
        ),
        (
            format!("{EXTERNAL}  endpoints: [{{address: db.123}}]\n"),
            "spec.endpoints[0].address",
            "neither an IP address nor a DNS name",
        ),
        (
            format!(
                "{}  endpoints: [{{address: db.example.com}}]\n",
                EXTERNAL.replace("resolution: DNS", "resolution: NONE")
            ),
            "spec.endpoints",
            "no endpoints should be provided for resolution NONE",
        ),
    ];
    for (spec, field, part) in cases {
        let (compiled, _) = compile_text(&service_entry("api", &spec));
        let message = single_error(&compiled, "ServiceEntry default/api", field);
        assert!(message.contains(part), "{message}");
    }
    // A wildcard host is fine when endpoints say what to resolve.
    let spec = EXTERNAL.replace("[api.example.com]", "['*.example.com']")
        + "  endpoints: [{address: a.example.com}]\n";
    compile_ok(&service_entry("api", &spec));
}

#[test]
fn the_resolver_is_asked_for_dns_names_only() {
    let names = |text: &str| -> Vec<String> {
        let loaded = parse_str("t.yaml", text);
        let ResourceSpec::ServiceEntry(spec) = &loaded.resources[0].spec else {
            panic!("not a ServiceEntry")
        };
        dns_names(spec).into_iter().map(String::from).collect()
    };
    let spec = format!(
        "{EXTERNAL}  endpoints: [{{address: a.example.com}}, {{address: 10.1.0.9}}, {{address: 'bad name'}}]\n"
    );
    assert_eq!(names(&service_entry("api", &spec)), ["a.example.com"]);
    assert_eq!(names(&service_entry("api", EXTERNAL)), ["api.example.com"]);
    let wildcard = EXTERNAL.replace("[api.example.com]", "['*.example.com']");
    assert!(names(&service_entry("api", &wildcard)).is_empty());
    assert!(names(&service_entry("web", GOOD_SPEC)).is_empty());
}
