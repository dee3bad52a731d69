//! The shapes of Istio's bookinfo routing tasks (`examples/bookinfo/`): each scenario
//! compiled with the ServiceEntries that stand in for bookinfo's Kubernetes Services routes
//! as Istio does (faults in the proxy's table, which injects them).

use vsteer_plan::http::HttpAction;

use super::*;

const SERVICES: &str = include_str!("../../../examples/bookinfo/services.yaml");

/// The VIPs of `services.yaml`, all on port 9080 but tcp-echo's.
const PRODUCTPAGE: &str = "127.100.1.1";
const DETAILS: &str = "127.100.1.2";
const RATINGS: &str = "127.100.1.3";
const REVIEWS: &str = "127.100.1.4";
const TCP_ECHO: &str = "127.100.1.5";

fn scenario(text: &str) -> Compiled {
    compile_ok(&format!("{SERVICES}---\n{text}"))
}

/// (subset, endpoints) of rule `rule`'s single destination in `vip`'s HTTP table.
fn rule_destination(compiled: &Compiled, vip: &str, rule: usize) -> (String, Vec<String>) {
    let service = compiled.plan.get(ip(vip), 9080, Protocol::Tcp).unwrap();
    let table = service
        .http
        .as_ref()
        .expect("a proxied service has a table");
    let HttpAction::Route { destinations, .. } = &table.rules[rule].action else {
        panic!("rule {rule} routes nowhere: {:?}", table.rules[rule].action);
    };
    assert_eq!(destinations.len(), 1);
    let cluster = &table.clusters[destinations[0].cluster];
    let endpoints = cluster
        .endpoints
        .iter()
        .map(|e| std::net::SocketAddr::new(e.address, e.port).to_string())
        .collect();
    (
        cluster.subset.as_deref().unwrap_or("-").to_string(),
        endpoints,
    )
}

fn proxied_for(compiled: &Compiled, vip: &str) -> Option<String> {
    match &compiled.plan.get(ip(vip), 9080, Protocol::Tcp)?.decision {
        Decision::Proxy { reason } => Some(reason.clone()),
        Decision::Kernel => None,
    }
}

#[test]
fn all_to_v1() {
    let compiled = scenario(include_str!("../../../examples/bookinfo/all-v1.yaml"));
    for (vip, v1) in [
        (PRODUCTPAGE, "127.0.10.1:9080"),
        (DETAILS, "127.0.11.1:9080"),
        (RATINGS, "127.0.12.1:9080"),
        (REVIEWS, "127.0.13.1:9080"),
    ] {
        assert_eq!(
            backends(&compiled, vip, 9080),
            expect(&[(v1, 1_000_000)]),
            "{vip}"
        );
        assert_eq!(
            proxied_for(&compiled, vip),
            None,
            "weighted routes stay in the kernel"
        );
    }
    // No VirtualService: every endpoint.
    assert_eq!(
        backends(&compiled, TCP_ECHO, 9000),
        expect(&[("127.0.14.1:9000", 500_000), ("127.0.14.2:9000", 500_000)])
    );
}

#[test]
fn reviews_canaries_50_50_and_80_20() {
    let compiled = scenario(include_str!(
        "../../../examples/bookinfo/reviews-50-v3.yaml"
    ));
    assert_eq!(
        backends(&compiled, REVIEWS, 9080),
        expect(&[("127.0.13.1:9080", 500_000), ("127.0.13.3:9080", 500_000)])
    );
    let compiled = scenario(include_str!(
        "../../../examples/bookinfo/reviews-80-20.yaml"
    ));
    assert_eq!(
        backends(&compiled, REVIEWS, 9080),
        expect(&[("127.0.13.1:9080", 800_000), ("127.0.13.2:9080", 200_000)])
    );
    assert_eq!(proxied_for(&compiled, REVIEWS), None);
}

#[test]
fn jason_to_reviews_v2_everyone_else_to_v1() {
    let compiled = scenario(include_str!(
        "../../../examples/bookinfo/reviews-jason-v2.yaml"
    ));
    assert_eq!(
        proxied_for(&compiled, REVIEWS).as_deref(),
        Some("VirtualService default/reviews http[0].match[0].headers[end-user]")
    );
    assert_eq!(
        rule_destination(&compiled, REVIEWS, 0),
        ("v2".to_string(), vec!["127.0.13.2:9080".to_string()])
    );
    assert_eq!(
        rule_destination(&compiled, REVIEWS, 1),
        ("v1".to_string(), vec!["127.0.13.1:9080".to_string()])
    );
    // A connection the proxy does not take gets the default rule.
    assert_eq!(
        backends(&compiled, REVIEWS, 9080),
        expect(&[("127.0.13.1:9080", 1_000_000)])
    );
}

/// The ratings delay and abort for jason, and details aborted for everyone: the proxy
/// serves the service with the fault in its table, which it injects, and routes to v1 as
/// Istio does.
#[test]
fn faults_for_jason_and_for_everyone_are_proxied_and_noted() {
    for (file, vip, reason) in [
        (
            include_str!("../../../examples/bookinfo/ratings-jason-delay.yaml"),
            RATINGS,
            "VirtualService default/ratings http[0].match[0].headers[end-user]",
        ),
        (
            include_str!("../../../examples/bookinfo/ratings-jason-abort.yaml"),
            RATINGS,
            "VirtualService default/ratings http[0].match[0].headers[end-user]",
        ),
        (
            include_str!("../../../examples/bookinfo/details-fault.yaml"),
            DETAILS,
            "VirtualService default/details http[0].fault",
        ),
    ] {
        let compiled = scenario(file);
        assert_eq!(proxied_for(&compiled, vip).as_deref(), Some(reason));
        let service = compiled.plan.get(ip(vip), 9080, Protocol::Tcp).unwrap();
        let table = service.http.as_ref().unwrap();
        assert!(table.rules[0].fault.is_some(), "{reason}");
        assert_eq!(rule_destination(&compiled, vip, 0).0, "v1");
        // Applied by the proxy: no note says otherwise.
        assert!(!has_note(&compiled, "fault"), "{:?}", compiled.notes);
    }
}

/// TCP traffic shifting: port 9000 80/20 between v1 and v2; the other port, which no rule
/// matches, gets Istio's default route (every endpoint).
#[test]
fn tcp_echo_shifts_20_percent_to_v2() {
    let compiled = scenario(include_str!(
        "../../../examples/bookinfo/tcp-echo-20-v2.yaml"
    ));
    assert_eq!(
        backends(&compiled, TCP_ECHO, 9000),
        expect(&[("127.0.14.1:9000", 800_000), ("127.0.14.2:9000", 200_000)])
    );
    assert_eq!(
        backends(&compiled, TCP_ECHO, 9001),
        expect(&[("127.0.14.1:9001", 500_000), ("127.0.14.2:9001", 500_000)])
    );
    assert!(has_note(
        &compiled,
        "no tcp rule applies to 127.100.1.5:9001/TCP"
    ));
}
