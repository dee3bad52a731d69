//! ServiceEntries: services, endpoints and their ports, and what is rejected.

use super::*;
use vsteer_plan::LoadBalancer;

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
    let keys: Vec<_> = compiled.plan.services().map(|s| s.key).collect();
    assert_eq!(
        keys,
        [
            key("10.0.0.53", 53, Protocol::Udp),
            key("10.0.0.53", 5353, Protocol::Tcp),
            key("fd00::53", 53, Protocol::Udp),
            key("fd00::53", 5353, Protocol::Tcp),
        ]
    );
    // Each VIP keeps only the endpoints of its own address family.
    for service in compiled.plan.services() {
        assert_eq!(service.backends.len(), 1);
        assert_eq!(
            service.backends[0].address.is_ipv4(),
            service.key.vip.is_ipv4()
        );
    }
    assert!(
        compiled.notes.iter().any(|n| n.contains("other family")),
        "{:?}",
        compiled.notes
    );
}

/// A ServiceEntry without addresses is legal (common in Istio's own samples): it defines no
/// service vsteer can steer (no virtual IP), with a note saying so, and it is a destination
/// that routes of other services reach.
#[test]
fn a_service_entry_without_addresses_is_a_destination_only() {
    let backend_only = GOOD_SPEC
        .replace("  addresses: [10.0.0.1]\n", "")
        .replace("web.example.com", "api.example.com")
        .replace("10.1.0.", "10.2.0.");
    let vs = resource(
        "VirtualService",
        "web",
        "  hosts: [web.example.com]
  http:
  - route: [{destination: {host: api.example.com}}]
",
    );
    let text = format!(
        "{}{}{vs}",
        service_entry("api", &backend_only),
        service_entry("web", GOOD_SPEC)
    );
    let compiled = compile_ok(&text);
    assert!(
        has_note(
            &compiled,
            "ServiceEntry default/api: no addresses, so a destination only"
        ),
        "{:#?}",
        compiled.notes
    );
    assert_eq!(compiled.plan.len(), 1, "only web has a VIP");
    assert_eq!(
        backends(&compiled, "10.0.0.1", 80),
        expect(&[("10.2.0.1:80", 500_000), ("10.2.0.2:80", 500_000)])
    );
    // Alone, it compiles to nothing, without an error.
    let compiled = compile_ok(&service_entry("api", &backend_only));
    assert!(compiled.plan.is_empty());
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
    assert!(compiled.plan.is_empty(), "rejected whole");
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
        loaded.warnings[0].resource().as_deref(),
        Some("Gateway default/gw")
    );
    assert!(loaded.warnings[0].message().contains("skipped"));
    assert_eq!(compiled.plan.len(), 1);
}

#[test]
fn unset_resolution_is_none_and_others_are_rejected() {
    // Unset is NONE (Istio's default), which takes no endpoints.
    let spec = GOOD_SPEC.replace("  resolution: STATIC\n", "");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(&compiled, "ServiceEntry default/web", "spec.endpoints");
    assert!(message.contains("Istio reads as NONE"), "{message}");

    let spec = GOOD_SPEC.replace("resolution: STATIC", "resolution: DYNAMIC_DNS");
    let (compiled, _) = compile_text(&service_entry("web", &spec));
    let message = single_error(&compiled, "ServiceEntry default/web", "spec.resolution");
    assert!(
        message.contains("DYNAMIC_DNS is not supported"),
        "{message}"
    );
}

#[test]
fn cidr_address_is_a_range_and_missing_hosts_are_rejected() {
    let spec = GOOD_SPEC.replace("[10.0.0.1]", "[10.0.0.0/24]");
    let compiled = compile_ok(&service_entry("web", &spec));
    let key = ServiceKey::range("10.0.0.0/24".parse().unwrap(), 80, Protocol::Tcp);
    assert!(
        compiled.plan.service(&key).is_some(),
        "{:#?}",
        compiled.plan
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
    assert_eq!(compiled.plan.len(), 1);
    assert_eq!(
        services(&compiled.plan)[0].resource,
        vsteer_model::ResourceId::new(vsteer_model::Kind::ServiceEntry, "default", "good")
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
    assert_eq!(compiled.plan.len(), 1);
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
    assert_eq!(compiled.plan.len(), 1);
    assert_eq!(
        services(&compiled.plan)[0].resource,
        vsteer_model::ResourceId::new(vsteer_model::Kind::ServiceEntry, "default", "first")
    );
}

/// `::ffff:10.0.0.1` is `10.0.0.1` in the kernel's maps (IPv4 is stored IPv4-mapped): the
/// two spellings are one VIP, claimed once, within one entry and across entries.
#[test]
fn an_ipv4_mapped_vip_is_the_same_vip_as_its_ipv4_address() {
    let mapped = GOOD_SPEC
        .replace(
            "  addresses: [10.0.0.1]",
            "  addresses: [\"::ffff:10.0.0.1\"]",
        )
        .replace("web.example.com", "other.example.com");
    let text = format!(
        "{}{}",
        service_entry("first", GOOD_SPEC),
        service_entry("second", &mapped)
    );
    let (compiled, _) = compile_text(&text);
    let message = single_error(
        &compiled,
        "ServiceEntry default/second",
        "spec.addresses[0]",
    );
    assert!(message.contains("10.0.0.1:80/TCP"), "{message}");
    assert_eq!(compiled.plan.len(), 1);

    let both = GOOD_SPEC.replace(
        "  addresses: [10.0.0.1]",
        "  addresses: [10.0.0.1, \"::ffff:10.0.0.1\"]",
    );
    let (compiled, _) = compile_text(&service_entry("both", &both));
    single_error(&compiled, "ServiceEntry default/both", "spec.addresses[1]");

    // An IPv4-mapped endpoint serves an IPv4 VIP as an IPv4 endpoint.
    let endpoint = GOOD_SPEC.replace("address: 10.1.0.2", "address: \"::ffff:10.1.0.2\"");
    let compiled = compile_ok(&service_entry("web", &endpoint));
    assert_eq!(
        backends(&compiled, "10.0.0.1", 80),
        expect(&[("10.1.0.1:80", 500_000), ("10.1.0.2:80", 500_000)])
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
    assert_eq!(compiled.plan.len(), 1);
}

#[test]
fn endpoints_share_equally_without_a_virtual_service() {
    let spec = GOOD_SPEC.replace(
        "  - address: 10.1.0.2\n",
        "  - address: 10.1.0.2\n  - address: 10.1.0.3\n",
    );
    let compiled = compile_ok(&service_entry("web", &spec));
    assert_eq!(
        backends(&compiled, "10.0.0.1", 80),
        expect(&[
            ("10.1.0.1:80", 333_334),
            ("10.1.0.2:80", 333_333),
            ("10.1.0.3:80", 333_333)
        ])
    );
    let service = &services(&compiled.plan)[0];
    assert_eq!(service.route, None);
    assert_eq!(service.load_balancer, LoadBalancer::Random);
}

/// Istio (Envoy) weighs a cluster's endpoints by their `weight`; unset and 0 count as 1.
#[test]
fn endpoint_weights_scale_their_share() {
    let spec = GOOD_SPEC.replace(
        "  - address: 10.1.0.2\n",
        "  - address: 10.1.0.2\n    weight: 3\n  - address: 10.1.0.3\n    weight: 0\n",
    );
    let compiled = compile_ok(&service_entry("web", &spec));
    assert_eq!(
        backends(&compiled, "10.0.0.1", 80),
        expect(&[
            ("10.1.0.1:80", 200_000),
            ("10.1.0.2:80", 600_000),
            ("10.1.0.3:80", 200_000)
        ])
    );
}

#[test]
fn no_endpoints_is_a_service_whose_connects_are_refused() {
    for spec in [
        GOOD_SPEC.replace(
            "  endpoints:\n  - address: 10.1.0.1\n  - address: 10.1.0.2\n",
            "",
        ),
        GOOD_SPEC.replace(
            "  endpoints:\n  - address: 10.1.0.1\n  - address: 10.1.0.2\n",
            "  endpoints: []\n",
        ),
        // Endpoints of the other family only: a connect cannot change family.
        GOOD_SPEC
            .replace("10.1.0.1", "'fd00::1'")
            .replace("10.1.0.2", "'fd00::2'"),
    ] {
        let compiled = compile_ok(&service_entry("web", &spec));
        assert_eq!(compiled.plan.len(), 1, "{spec}");
        assert!(backends(&compiled, "10.0.0.1", 80).is_empty(), "{spec}");
        assert!(
            has_note(
                &compiled,
                "10.0.0.1:80/TCP: no backend, connects are refused"
            ),
            "{:?}",
            compiled.notes
        );
    }
}

#[test]
fn same_endpoint_twice_is_one_backend_with_both_shares() {
    let spec = GOOD_SPEC.replace(
        "  - address: 10.1.0.2\n",
        "  - address: 10.1.0.1\n  - address: 10.1.0.3\n",
    );
    let compiled = compile_ok(&service_entry("web", &spec));
    assert_eq!(
        backends(&compiled, "10.0.0.1", 80),
        expect(&[("10.1.0.1:80", 666_667), ("10.1.0.3:80", 333_333)])
    );
}
