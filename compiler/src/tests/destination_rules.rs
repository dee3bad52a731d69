//! DestinationRules: subsets, and the load balancer of the traffic they take.

use super::*;
use vsteer_plan::LoadBalancer;

fn lb(compiled: &Compiled, vip: &str, port: u16) -> LoadBalancer {
    compiled
        .plan
        .get(ip(vip), port, Protocol::Tcp)
        .unwrap()
        .load_balancer
}

/// `api` and `web` under example.com, ports 80 and 443 each.
fn two_hosts(rules: &str) -> String {
    let entry = |name: &str, vip: &str| {
        service_entry(
            name,
            &format!(
                "  hosts: [{name}.example.com]
  addresses: [{vip}]
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  - {{number: 443, name: tls, protocol: TLS}}
  resolution: STATIC
  endpoints:
  - {{address: 10.9.0.1, labels: {{version: v1}}}}
  - {{address: 10.9.0.2, labels: {{version: v2}}}}
"
            ),
        )
    };
    format!(
        "{}{}{rules}",
        entry("api", "10.0.0.1"),
        entry("web", "10.0.0.2")
    )
}

#[test]
fn source_ip_hash_without_a_virtual_service() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {useSourceIp: true}\n",
    );
    let compiled = compile_ok(&two_hosts(&rule));
    assert_eq!(lb(&compiled, "10.0.0.1", 80), LoadBalancer::SourceIpHash);
    assert_eq!(lb(&compiled, "10.0.0.2", 80), LoadBalancer::Random);
}

#[test]
fn port_level_settings_override_the_rule() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
    - port: {number: 443}
      loadBalancer: {simple: LEAST_REQUEST}
",
    );
    let compiled = compile_ok(&two_hosts(&rule));
    assert_eq!(lb(&compiled, "10.0.0.1", 80), LoadBalancer::RoundRobin);
    assert_eq!(lb(&compiled, "10.0.0.1", 443), LoadBalancer::LeastRequest);
}

#[test]
fn subset_policy_overrides_the_rule_for_traffic_to_the_subset() {
    let rules = format!(
        "{}{}",
        resource(
            "DestinationRule",
            "api",
            "  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: LEAST_CONN}
",
        ),
        resource(
            "VirtualService",
            "api",
            "  hosts: [api.example.com]
  http:
  - route: [{destination: {host: api.example.com, subset: v2}}]
  tcp:
  - route: [{destination: {host: api.example.com, subset: v1}}]
",
        )
    );
    let compiled = compile_ok(&two_hosts(&rules));
    assert_eq!(lb(&compiled, "10.0.0.1", 80), LoadBalancer::LeastRequest);
    assert_eq!(
        backends(&compiled, "10.0.0.1", 80),
        expect(&[("10.9.0.2:80", 1_000_000)])
    );
    assert_eq!(lb(&compiled, "10.0.0.1", 443), LoadBalancer::RoundRobin);
}

#[test]
fn destinations_with_different_policies_use_the_first() {
    let rules = format!(
        "{}{}",
        resource(
            "DestinationRule",
            "api",
            "  host: api.example.com
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
  - {name: v2, labels: {version: v2}}
",
        ),
        resource(
            "VirtualService",
            "api",
            "  hosts: [api.example.com]
  http:
  - route:
    - {destination: {host: api.example.com, subset: v1}, weight: 10}
    - {destination: {host: api.example.com, subset: v2}, weight: 90}
",
        )
    );
    let compiled = compile_ok(&two_hosts(&rules));
    assert_eq!(lb(&compiled, "10.0.0.1", 80), LoadBalancer::RoundRobin);
    assert!(
        has_note(
            &compiled,
            "different load balancers (ROUND_ROBIN and RANDOM at route[1])"
        ),
        "{:?}",
        compiled.notes
    );
}

#[test]
fn exact_host_beats_wildcard_host() {
    let rules = format!(
        "{}{}",
        resource(
            "DestinationRule",
            "all",
            "  host: '*.example.com'\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        ),
        resource(
            "DestinationRule",
            "api",
            "  host: api.example.com\n  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n",
        )
    );
    let compiled = compile_ok(&two_hosts(&rules));
    assert_eq!(lb(&compiled, "10.0.0.1", 80), LoadBalancer::LeastRequest);
    assert_eq!(lb(&compiled, "10.0.0.2", 80), LoadBalancer::RoundRobin);
}

#[test]
fn l7_hash_keys_and_a_passthrough_subset() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com\n  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: s}}}}\n",
    );
    let compiled = compile_ok(&two_hosts(&rule));
    assert_eq!(lb(&compiled, "10.0.0.1", 80), LoadBalancer::Random);
    assert!(
        has_note(
            &compiled,
            "httpCookie needs the requests: the proxy serves it on HTTP ports"
        ),
        "{:?}",
        compiled.notes
    );

    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com\n  subsets:\n  - {name: v1, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}\n",
    );
    // PASSTHROUGH is served (see tests::passthrough): no error.
    compile_ok(&two_hosts(&rule));
}

#[test]
fn unapplied_settings_are_named_in_a_note() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1, tcpKeepalive: {time: 7200s}}}, tls: {mode: ISTIO_MUTUAL}}\n",
    );
    let compiled = compile_ok(&two_hosts(&rule));
    assert!(
        has_note(
            &compiled,
            "DestinationRule default/api: not applied by vsteer: spec.trafficPolicy.connectionPool.tcp.tcpKeepalive, spec.trafficPolicy.tls"
        ),
        "{:?}",
        compiled.notes
    );
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
    let subsets: Vec<_> = services(&compiled.plan)[0]
        .backends
        .iter()
        .map(|b| b.subsets.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .collect();
    assert_eq!(subsets, [vec!["one", "all"], vec!["all"]]);
    assert!(
        compiled.notes.iter().any(|n| n.starts_with("DestinationRule default/r-default: host reviews.default.svc.cluster.local matches no ServiceEntry host")),
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

/// `reviews` with a DestinationRule selecting client workloads (`app: productpage`), first
/// by precedence, defining subset `canary` and round robin; `selector` is its
/// `workloadSelector`. The VirtualService sends half to `canary`, half to `v1`.
fn client_selected_rule(selector: &str) -> String {
    let selected = resource(
        "DestinationRule",
        "for-productpage",
        &format!(
            "  host: reviews
  workloadSelector: {selector}
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
  subsets:
  - {{name: canary, labels: {{version: v2}}}}
"
        ),
    );
    let vs = reviews_vs(
        "  http:
  - route:
    - {destination: {host: reviews, subset: canary}, weight: 50}
    - {destination: {host: reviews, subset: v1}, weight: 50}
",
    );
    format!("{selected}{vs}")
}

/// The backends of [`client_selected_rule`]: half of the share to v1's two endpoints, the
/// other half to `canary`, as `rest` says.
fn half_to_v1_and(rest: &[(&str, u32)]) -> Vec<(String, u32)> {
    let mut all = vec![("10.1.1.1:9080", 250_000), ("10.1.1.2:9080", 250_000)];
    all.extend_from_slice(rest);
    expect(&all)
}

/// Istio applies a DestinationRule with a `workloadSelector` only to the selected client
/// workloads. vsteer does not know the connecting workload, so the rule applies to no
/// client: valid (no error, `matchLabels` read as Istio's field), with a note, and the
/// host follows its other rules: `canary` is undefined, so its share is refused.
#[test]
fn a_rule_that_selects_client_workloads_applies_to_no_client() {
    let (compiled, parsed) =
        compile_text(&client_selected_rule("{matchLabels: {app: productpage}}"));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    assert!(
        has_note(
            &compiled,
            "DestinationRule default/for-productpage: spec.workloadSelector applies it only to \
             client workloads with app=productpage in Istio"
        ),
        "{:#?}",
        compiled.notes
    );
    assert_eq!(
        backends(&compiled, "10.0.0.1", 9080),
        half_to_v1_and(&[("[::]:0", 500_000)])
    );
    assert_eq!(lb(&compiled, "10.0.0.1", 9080), LoadBalancer::Random);
}

/// A selector without labels selects every workload: the rule applies as if it had none.
#[test]
fn a_workload_selector_without_labels_applies_to_every_client() {
    for selector in ["{}", "{matchLabels: {}}"] {
        let compiled = compile_ok(&client_selected_rule(selector));
        assert!(
            has_note(&compiled, "selects no labels, so every workload"),
            "{:#?}",
            compiled.notes
        );
        assert_eq!(
            backends(&compiled, "10.0.0.1", 9080),
            half_to_v1_and(&[("10.1.2.1:9080", 250_000), ("10.1.2.2:9080", 250_000)])
        );
        assert_eq!(lb(&compiled, "10.0.0.1", 9080), LoadBalancer::RoundRobin);
    }
}

/// The limits of the HTTP cluster of api:80 (its default route's, or the VirtualService's
/// first destination's).
/// The first cluster of the route table of 10.0.0.1:80.
fn first_cluster(compiled: &Compiled) -> &vsteer_plan::http::Cluster {
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    &service.http.as_ref().expect("a route table").clusters[0]
}

fn limits(compiled: &Compiled) -> vsteer_plan::http::ConnectionLimits {
    first_cluster(compiled).limits
}

/// Istio's circuit-breaking task has no VirtualService: a DestinationRule's `connectionPool`
/// alone sends an HTTP service to the proxy, which applies the limits; a TLS port stays in
/// the kernel, which counts nothing.
#[test]
fn connection_pool_limits_send_an_http_service_to_the_proxy() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 0, maxRequestsPerConnection: 5}
",
    );
    let compiled = compile_ok(&two_hosts(&rule));
    let http = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    match &http.decision {
        Decision::Proxy { reason } => assert!(reason.contains("connectionPool"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        limits(&compiled),
        vsteer_plan::http::ConnectionLimits {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            // 0 is unset in Istio: no limit.
            max_requests: None,
            max_requests_per_connection: Some(5),
            connect_timeout: Some(std::time::Duration::from_millis(250)),
        }
    );
    let tls = compiled
        .plan
        .get(ip("10.0.0.1"), 443, Protocol::Tcp)
        .unwrap();
    assert_eq!(tls.decision, Decision::Kernel);
    assert!(has_note(
        &compiled,
        "api.example.com port 443: the DestinationRule's connectionPool limits apply on the proxy path"
    ));
    // Another host without a rule: unlimited, in the kernel.
    let web = compiled
        .plan
        .get(ip("10.0.0.2"), 80, Protocol::Tcp)
        .unwrap();
    assert_eq!(web.decision, Decision::Kernel);
}

/// As Istio's `MergeTrafficPolicy`: a subset's `connectionPool` replaces the rule's whole,
/// and a port level replaces both, even when it sets none.
#[test]
fn connection_pools_merge_by_subset_and_port_as_istio_merges_them() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 7}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {http: {http2MaxRequests: 9}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: ROUND_ROBIN}
",
    );
    let vs = |subset: &str| {
        resource(
            "VirtualService",
            "api",
            &format!(
                "  hosts: [api.example.com]\n  http:\n  - match: [{{headers: {{x: {{exact: y}}}}}}]\n    route: [{{destination: {{host: api.example.com, subset: {subset}}}}}]\n"
            ),
        )
    };
    let v1 = compile_ok(&two_hosts(&format!("{rule}{}", vs("v1"))));
    let expected = vsteer_plan::http::ConnectionLimits {
        max_requests: Some(9),
        ..Default::default()
    };
    assert_eq!(limits(&v1), expected);
    let v2 = compile_ok(&two_hosts(&format!("{rule}{}", vs("v2"))));
    assert!(limits(&v2).is_unlimited(), "{:?}", limits(&v2));
}

#[test]
fn negative_limits_and_bad_connect_timeouts_are_errors_naming_the_field() {
    for (pool, field) in [
        (
            "{tcp: {maxConnections: -1}}",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        ),
        (
            "{tcp: {connectTimeout: soon}}",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        ),
        (
            "{http: {http1MaxPendingRequests: -5}}",
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
        ),
    ] {
        let rule = resource(
            "DestinationRule",
            "api",
            &format!("  host: api.example.com\n  trafficPolicy: {{connectionPool: {pool}}}\n"),
        );
        let (compiled, _) = compile_text(&two_hosts(&rule));
        single_error(&compiled, "DestinationRule default/api", field);
    }
}

fn outlier(compiled: &Compiled) -> Option<vsteer_plan::http::OutlierDetection> {
    first_cluster(compiled).outlier.clone()
}

/// Istio's circuit-breaking task: `outlierDetection` alone sends an HTTP service to the
/// proxy (only it sees responses), with Envoy's defaults for what Istio leaves unset; a TLS
/// port stays in the kernel, with a note.
#[test]
fn outlier_detection_sends_an_http_service_to_the_proxy_with_envoys_defaults() {
    let rule = resource(
        "DestinationRule",
        "api",
        "  host: api.example.com
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
",
    );
    let compiled = compile_ok(&two_hosts(&rule));
    let http = compiled
        .plan
        .get(ip("10.0.0.1"), 80, Protocol::Tcp)
        .unwrap();
    match &http.decision {
        Decision::Proxy { reason } => assert!(reason.contains("outlierDetection"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let expected = vsteer_plan::http::OutlierDetection {
        consecutive_5xx: Some(1),
        interval: std::time::Duration::from_secs(1),
        base_ejection_time: std::time::Duration::from_secs(180),
        max_ejection_percent: 100,
        ..Default::default()
    };
    assert_eq!(outlier(&compiled), Some(expected));
    let tls = compiled
        .plan
        .get(ip("10.0.0.1"), 443, Protocol::Tcp)
        .unwrap();
    assert_eq!(tls.decision, Decision::Kernel);
    assert!(has_note(
        &compiled,
        "api.example.com port 443: the DestinationRule's outlierDetection judges responses"
    ));

    // `{}`: Envoy's 5 consecutive 5xx, 10 s, 30 s, 10%; a 0 turns a count off; the local
    // origin count needs the split, and the deprecated consecutiveErrors is not read.
    let rule = |od: &str| {
        resource(
            "DestinationRule",
            "api",
            &format!("  host: api.example.com\n  trafficPolicy: {{outlierDetection: {od}}}\n"),
        )
    };
    let defaults = compile_ok(&two_hosts(&rule("{}")));
    assert_eq!(outlier(&defaults), Some(Default::default()));
    let off = compile_ok(&two_hosts(&rule(
        "{consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, consecutiveLocalOriginFailures: 2, consecutiveErrors: 4}",
    )));
    let got = outlier(&off).expect("detection");
    assert_eq!(
        (
            got.consecutive_5xx,
            got.consecutive_gateway,
            got.consecutive_local_origin
        ),
        (None, Some(3), None)
    );
    assert!(
        has_note(
            &off,
            "spec.trafficPolicy.outlierDetection.consecutiveErrors"
        ),
        "{:?}",
        off.notes
    );
    assert!(has_note(
        &off,
        "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures"
    ));
    let split = compile_ok(&two_hosts(&rule(
        "{splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2}",
    )));
    let got = outlier(&split).expect("detection");
    assert_eq!(
        (got.split_local_origin, got.consecutive_local_origin),
        (true, Some(2))
    );
    // The split alone: Envoy's 5 local failures.
    let split = compile_ok(&two_hosts(&rule("{splitExternalLocalOriginErrors: true}")));
    assert_eq!(
        outlier(&split).expect("detection").consecutive_local_origin,
        Some(5)
    );
}

#[test]
fn bad_outlier_detection_fields_are_errors_naming_the_field() {
    for (od, field) in [
        (
            "{interval: often}",
            "spec.trafficPolicy.outlierDetection.interval",
        ),
        (
            "{baseEjectionTime: 0s}",
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
        ),
        (
            "{maxEjectionPercent: 101}",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        ),
        (
            "{minHealthPercent: -1}",
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
        ),
        (
            "{outlierDetectionHttpErrorCodes: [503, 700]}",
            "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[1]",
        ),
    ] {
        let rule = resource(
            "DestinationRule",
            "api",
            &format!("  host: api.example.com\n  trafficPolicy: {{outlierDetection: {od}}}\n"),
        );
        let (compiled, _) = compile_text(&two_hosts(&rule));
        single_error(&compiled, "DestinationRule default/api", field);
    }
}
