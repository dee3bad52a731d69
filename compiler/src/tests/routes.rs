//! VirtualService rules: which one applies to a service, and its weighted destinations.

use super::*;

/// `{destination: {host: reviews, subset: S}, weight: W}` for each (subset, weight).
fn split(pairs: &[(&str, i32)]) -> String {
    let mut out = String::from("  - route:\n");
    for (subset, weight) in pairs {
        out.push_str(&format!(
            "    - destination: {{host: reviews, subset: {subset}}}\n      weight: {weight}\n"
        ));
    }
    out
}

fn http_split(pairs: &[(&str, i32)]) -> String {
    format!("  http:\n{}", split(pairs))
}

/// The sum of the weights of backends in 10.1.`n`.0/24, i.e. of version v`n`.
fn version_total(list: &[(String, u32)], n: u8) -> u32 {
    let prefix = format!("10.1.{n}.");
    list.iter()
        .filter(|(a, _)| a.starts_with(&prefix))
        .map(|(_, w)| w)
        .sum()
}

#[test]
fn canary_80_20_over_two_subsets() {
    let compiled = compile_ok(&reviews_vs(&http_split(&[("v1", 80), ("v2", 20)])));
    let list = backends(&compiled, "10.0.0.1", 9080);
    assert_eq!(
        list,
        expect(&[
            ("10.1.1.1:9080", 400_000),
            ("10.1.1.2:9080", 400_000),
            ("10.1.2.1:9080", 100_000),
            ("10.1.2.2:9080", 100_000),
        ])
    );
    assert_eq!(
        (version_total(&list, 1), version_total(&list, 2)),
        (800_000, 200_000)
    );
    assert_eq!(
        route(&compiled, "10.0.0.1", 9080).as_deref(),
        Some("VirtualService default/reviews http[0]")
    );
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 9080, Protocol::Tcp)
        .unwrap();
    assert_eq!(names(&service.backends[0].subsets), ["v1"]);
    assert_eq!(names(&service.backends[2].subsets), ["v2"]);
}

#[test]
fn three_way_50_30_20() {
    let compiled = compile_ok(&reviews_vs(&http_split(&[
        ("v1", 50),
        ("v2", 30),
        ("v3", 20),
    ])));
    let list = backends(&compiled, "10.0.0.1", 9080);
    assert_eq!(
        list,
        expect(&[
            ("10.1.1.1:9080", 250_000),
            ("10.1.1.2:9080", 250_000),
            ("10.1.2.1:9080", 150_000),
            ("10.1.2.2:9080", 150_000),
            // 200000 over three: the remainder goes to the lowest addresses.
            ("10.1.3.1:9080", 66_667),
            ("10.1.3.2:9080", 66_667),
            ("10.1.3.3:9080", 66_666),
        ])
    );
}

#[test]
fn one_percent_over_a_three_endpoint_subset_survives_rounding() {
    let compiled = compile_ok(&reviews_vs(&http_split(&[("v1", 99), ("v3", 1)])));
    let list = backends(&compiled, "10.0.0.1", 9080);
    assert_eq!(
        list,
        expect(&[
            ("10.1.1.1:9080", 495_000),
            ("10.1.1.2:9080", 495_000),
            ("10.1.3.1:9080", 3_334),
            ("10.1.3.2:9080", 3_333),
            ("10.1.3.3:9080", 3_333),
        ])
    );
    assert!(vsteer_plan::render(&compiled.plan).contains("0.333%"));
}

#[test]
fn weight_zero_destination_gets_no_backend() {
    let compiled = compile_ok(&reviews_vs(&http_split(&[("v1", 100), ("v2", 0)])));
    assert_eq!(
        backends(&compiled, "10.0.0.1", 9080),
        expect(&[("10.1.1.1:9080", 500_000), ("10.1.1.2:9080", 500_000)])
    );
}

/// Istio (Envoy) answers 503 for the share of a subset that selects no endpoint; at connect
/// time that share is refused.
#[test]
fn a_subset_without_endpoints_has_its_share_refused() {
    let text = reviews_vs(&http_split(&[("v1", 80), ("v4", 20)])).replace(
        "  - {name: v3, labels: {version: v3}}\n",
        "  - {name: v3, labels: {version: v3}}\n  - {name: v4, labels: {version: v4}}\n",
    );
    let compiled = compile_ok(&text);
    assert_eq!(
        backends(&compiled, "10.0.0.1", 9080),
        expect(&[
            ("10.1.1.1:9080", 400_000),
            ("10.1.1.2:9080", 400_000),
            ("[::]:0", 200_000)
        ])
    );
    assert!(
        has_note(
            &compiled,
            "subset v4 of reviews.default.svc.cluster.local has no IPv4 endpoint for 10.0.0.1:9080/TCP; its share is refused at connect time"
        ),
        "{:?}",
        compiled.notes
    );

    // When every destination is empty the service has no backend at all.
    let text = text.replace("subset: v1", "subset: v4");
    let compiled = compile_ok(&text);
    assert!(backends(&compiled, "10.0.0.1", 9080).is_empty());
    assert!(
        has_note(&compiled, "connects are refused"),
        "{:?}",
        compiled.notes
    );
}

/// `db` at 10.0.0.10 and 10.0.1.10, ports 5432 and 6432, a primary and a replica.
const DB: &str = "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.com]
  addresses: [10.0.0.10, 10.0.1.10]
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  - {number: 6432, name: tcp-bouncer, protocol: TCP}
  resolution: STATIC
  endpoints:
  - {address: 10.2.0.1, labels: {role: primary}}
  - {address: 10.2.0.2, labels: {role: replica}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.example.com
  subsets:
  - {name: primary, labels: {role: primary}}
  - {name: replica, labels: {role: replica}}
";

fn db_vs(rules: &str) -> String {
    format!(
        "{DB}{}",
        resource(
            "VirtualService",
            "db",
            &format!("  hosts: [db.example.com]\n{rules}")
        )
    )
}

#[test]
fn tcp_rules_match_port_and_destination_subnet_per_vip_and_port() {
    let compiled = compile_ok(&db_vs(
        "  tcp:
  - match: [{port: 5432, destinationSubnets: [10.0.0.0/24]}]
    route: [{destination: {host: db.example.com, subset: primary}}]
  - match: [{port: 5432}]
    route: [{destination: {host: db.example.com, subset: replica}}]
  - match: [{port: 6432, destinationSubnets: [10.0.0.10]}]
    route: [{destination: {host: db.example.com, subset: replica}}]
",
    ));
    // Both the first and the second rule match 10.0.0.10:5432: the first wins.
    assert_eq!(
        route(&compiled, "10.0.0.10", 5432).as_deref(),
        Some("VirtualService default/db tcp[0]")
    );
    assert_eq!(
        backends(&compiled, "10.0.0.10", 5432),
        expect(&[("10.2.0.1:5432", 1_000_000)])
    );
    assert_eq!(
        route(&compiled, "10.0.1.10", 5432).as_deref(),
        Some("VirtualService default/db tcp[1]")
    );
    assert_eq!(
        backends(&compiled, "10.0.1.10", 5432),
        expect(&[("10.2.0.2:5432", 1_000_000)])
    );
    assert_eq!(
        backends(&compiled, "10.0.0.10", 6432),
        expect(&[("10.2.0.2:6432", 1_000_000)])
    );
    // No tcp rule matches 10.0.1.10:6432: Istio's default route for the port, all
    // endpoints of the host.
    assert_eq!(route(&compiled, "10.0.1.10", 6432), None);
    assert_eq!(
        backends(&compiled, "10.0.1.10", 6432),
        expect(&[("10.2.0.1:6432", 500_000), ("10.2.0.2:6432", 500_000)])
    );
    assert!(
        has_note(
            &compiled,
            "VirtualService default/db: no tcp rule applies to 10.0.1.10:6432/TCP; Istio's default route: all endpoints of db.example.com"
        ),
        "{:?}",
        compiled.notes
    );
}

/// Istio issue 8's shape: rules only for port 9000, traffic on 9001 takes the default route.
#[test]
fn a_port_no_tcp_rule_matches_takes_the_default_route() {
    let compiled = compile_ok(&db_vs(
        "  tcp:
  - match: [{port: 5432}]
    route: [{destination: {host: db.example.com, subset: replica}}]
",
    ));
    assert_eq!(
        backends(&compiled, "10.0.0.10", 5432),
        expect(&[("10.2.0.2:5432", 1_000_000)])
    );
    assert_eq!(
        backends(&compiled, "10.0.0.10", 6432),
        expect(&[("10.2.0.1:6432", 500_000), ("10.2.0.2:6432", 500_000)])
    );
}

#[test]
fn a_rule_without_match_is_the_default_route() {
    let compiled = compile_ok(&db_vs(
        "  tcp:
  - match: [{port: 6432}]
    route: [{destination: {host: db.example.com, subset: replica}}]
  - route:
    - {destination: {host: db.example.com, subset: primary}, weight: 75}
    - {destination: {host: db.example.com, subset: replica}, weight: 25}
",
    ));
    for vip in ["10.0.0.10", "10.0.1.10"] {
        assert_eq!(
            backends(&compiled, vip, 5432),
            expect(&[("10.2.0.1:5432", 750_000), ("10.2.0.2:5432", 250_000)])
        );
        assert_eq!(
            route(&compiled, vip, 5432).as_deref(),
            Some("VirtualService default/db tcp[1]")
        );
        assert_eq!(
            route(&compiled, vip, 6432).as_deref(),
            Some("VirtualService default/db tcp[0]")
        );
    }
}

#[test]
fn destination_port_selects_the_port_of_the_destination() {
    // Connections to either port go to the bouncer port of the replica.
    let compiled = compile_ok(&db_vs(
        "  tcp:
  - route: [{destination: {host: db.example.com, subset: replica, port: {number: 6432}}}]
",
    ));
    assert_eq!(
        backends(&compiled, "10.0.0.10", 5432),
        expect(&[("10.2.0.2:6432", 1_000_000)])
    );
}

/// The rule names of a service's HTTP route table and its decision.
fn served(compiled: &Compiled, vip: &str, port: u16) -> (Vec<String>, Decision) {
    let service = compiled.plan.get(ip(vip), port, Protocol::Tcp).unwrap();
    let rules = service
        .http
        .as_ref()
        .map(|t| t.rules.iter().map(|r| r.route.rule.to_string()).collect())
        .unwrap_or_default();
    (rules, service.decision.clone())
}

#[test]
fn http_rules_that_read_requests_go_to_the_proxy_and_the_first_take_all_rule_is_the_fallback() {
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - redirect: {uri: /elsewhere}
  - match: [{port: 9081}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{port: 9080}]
    timeout: 5s
    route: [{destination: {host: reviews, subset: v2}}]
",
    ));
    // The redirect takes every request the /api rule leaves: Istio never reaches http[3].
    let (rules, decision) = served(&compiled, "10.0.0.1", 9080);
    assert_eq!(rules, ["http[0]", "http[1]"]);
    assert_eq!(
        decision,
        Decision::Proxy {
            reason: "VirtualService default/reviews http[0].match[0].uri".into()
        }
    );
    // At connect time (the proxy's own connects, no proxy reachable) the redirect decides,
    // and it has no destination.
    assert_eq!(
        route(&compiled, "10.0.0.1", 9080).as_deref(),
        Some("VirtualService default/reviews http[1]")
    );
    assert_eq!(backends(&compiled, "10.0.0.1", 9080), expect(&[]));

    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{port: 9081}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{port: 9080}]
    timeout: 5s
    route: [{destination: {host: reviews, subset: v2}}]
",
    ));
    let (rules, _) = served(&compiled, "10.0.0.1", 9080);
    assert_eq!(rules, ["http[0]", "http[2]"]);
    assert_eq!(
        route(&compiled, "10.0.0.1", 9080).as_deref(),
        Some("VirtualService default/reviews http[2]")
    );
    assert_eq!(
        backends(&compiled, "10.0.0.1", 9080),
        expect(&[("10.1.2.1:9080", 500_000), ("10.1.2.2:9080", 500_000)])
    );
    // The proxy applies the timeout: nothing to note.
    assert!(!has_note(&compiled, "timeout"), "{:?}", compiled.notes);
}

#[test]
fn a_service_whose_first_rule_takes_everything_plainly_stays_in_the_kernel() {
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{port: 9080}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v1}}]
",
    ));
    let (rules, decision) = served(&compiled, "10.0.0.1", 9080);
    assert_eq!(rules, ["http[0]"]);
    assert_eq!(decision, Decision::Kernel);
    assert!(compiled.notes.is_empty(), "{:?}", compiled.notes);
}

#[test]
fn an_action_on_a_rule_that_takes_every_request_needs_the_proxy() {
    for (rule, field) in [
        (
            "fault: {abort: {httpStatus: 500, percentage: {value: 10}}}",
            "fault",
        ),
        ("headers: {request: {set: {x-a: b}}}", "headers"),
        ("rewrite: {uri: /v2}", "rewrite"),
        ("mirror: {host: reviews, subset: v1}", "mirror"),
        ("retries: {attempts: 2}", "retries"),
    ] {
        let compiled = compile_ok(&reviews_vs(&format!(
            "  http:
  - {rule}
    route: [{{destination: {{host: reviews, subset: v2}}}}]
"
        )));
        let (rules, decision) = served(&compiled, "10.0.0.1", 9080);
        assert_eq!(rules, ["http[0]"], "{rule}");
        assert_eq!(
            decision,
            Decision::Proxy {
                reason: format!("VirtualService default/reviews http[0].{field}")
            },
            "{rule}"
        );
        // Without the proxy the connections still go where the rule routes them.
        assert_eq!(
            backends(&compiled, "10.0.0.1", 9080),
            expect(&[("10.1.2.1:9080", 500_000), ("10.1.2.2:9080", 500_000)]),
            "{rule}"
        );
    }
}

#[test]
fn rules_of_the_other_protocol_leave_all_endpoints() {
    let compiled = compile_ok(&reviews_vs(
        "  tcp:
  - route: [{destination: {host: reviews, subset: v1}}]
",
    ));
    assert_eq!(route(&compiled, "10.0.0.1", 9080), None);
    assert_eq!(backends(&compiled, "10.0.0.1", 9080).len(), 7);
    assert!(
        has_note(&compiled, "has no http rules"),
        "{:?}",
        compiled.notes
    );
}

#[test]
fn tls_rules_on_a_tcp_port_and_gateway_only_virtual_services_are_skipped() {
    let compiled = compile_ok(&db_vs(
        "  tls:
  - match: [{sniHosts: [db.example.com]}]
    route: [{destination: {host: db.example.com, subset: primary}}]
  tcp:
  - route: [{destination: {host: db.example.com, subset: replica}}]
",
    ));
    // The port is TCP: tls rules apply to TLS ports only (see `tls_routes`).
    assert_eq!(
        backends(&compiled, "10.0.0.10", 5432),
        expect(&[("10.2.0.2:5432", 1_000_000)])
    );

    let compiled = compile_ok(&db_vs(
        "  gateways: [istio-system/ingress]
  tcp:
  - route: [{destination: {host: db.example.com, subset: replica}}]
",
    ));
    assert!(
        has_note(&compiled, "applies only to gateways"),
        "{:?}",
        compiled.notes
    );
    assert_eq!(route(&compiled, "10.0.0.10", 5432), None);
    assert_eq!(backends(&compiled, "10.0.0.10", 5432).len(), 2);
}

#[test]
fn first_virtual_service_for_a_host_wins() {
    let second = resource(
        "VirtualService",
        "db-2",
        "  hosts: [db.example.com]
  tcp:
  - route: [{destination: {host: db.example.com, subset: primary}}]
",
    );
    let text = format!(
        "{}{second}",
        db_vs("  tcp:\n  - route: [{destination: {host: db.example.com, subset: replica}}]\n")
    );
    let compiled = compile_ok(&text);
    assert_eq!(
        route(&compiled, "10.0.0.10", 5432).as_deref(),
        Some("VirtualService default/db tcp[0]")
    );
    assert!(
        has_note(
            &compiled,
            "VirtualService default/db-2: also covers 10.0.0.10:5432/TCP, but VirtualService default/db applies"
        ),
        "{:?}",
        compiled.notes
    );
}

#[test]
fn unknown_destination_host_is_rejected() {
    let (compiled, _) = compile_text(&reviews_vs(
        "  http:\n  - route: [{destination: {host: ratings, subset: v1}}]\n",
    ));
    let message = single_error(
        &compiled,
        "VirtualService default/reviews",
        "spec.http[0].route[0].destination.host",
    );
    assert!(
        message.contains("unknown host ratings.default.svc.cluster.local"),
        "{message}"
    );
    // Compiled as if the VirtualService were absent: all endpoints.
    assert_eq!(backends(&compiled, "10.0.0.1", 9080).len(), 7);
}

/// Istio keeps a VirtualService that routes to a subset no DestinationRule defines: Envoy
/// answers 503 for that share (no such cluster); at connect time it is refused, and said so.
#[test]
fn an_undefined_subset_keeps_the_virtual_service_and_its_share_is_refused() {
    let compiled = compile_ok(&reviews_vs(&http_split(&[("v1", 50), ("v9", 50)])));
    let list = backends(&compiled, "10.0.0.1", 9080);
    assert_eq!(version_total(&list, 1), 500_000);
    assert_eq!(
        list.iter().find(|(a, _)| a == "[::]:0").map(|(_, w)| *w),
        Some(500_000),
        "{list:?}"
    );
    assert!(
        has_note(
            &compiled,
            "VirtualService default/reviews: spec.http[0].route[1].destination.subset: subset v9 not defined by any DestinationRule for host reviews.default.svc.cluster.local; its share is refused"
        ),
        "{:?}",
        compiled.notes
    );
    // Every destination undefined: no backend at all.
    let compiled = compile_ok(&reviews_vs(&http_split(&[("v8", 50), ("v9", 50)])));
    assert!(backends(&compiled, "10.0.0.1", 9080).is_empty());
}

#[test]
fn weights_are_relative_and_an_unset_one_counts_as_zero() {
    let shares = |pairs: &[(&str, i32)]| {
        let compiled = compile_ok(&reviews_vs(&http_split(pairs)));
        let list = backends(&compiled, "10.0.0.1", 9080);
        (version_total(&list, 1), version_total(&list, 2))
    };
    // 70 + 20 = 90: 7/9 and 2/9, the same split as 140/40.
    let (v1, v2) = shares(&[("v1", 70), ("v2", 20)]);
    assert_eq!((v1, v2), shares(&[("v1", 140), ("v2", 40)]));
    let scale = f64::from(vsteer_plan::WEIGHT_SCALE);
    assert!((f64::from(v1) / scale - 7.0 / 9.0).abs() < 1e-6, "{v1}");
    assert!((f64::from(v2) / scale - 2.0 / 9.0).abs() < 1e-6, "{v2}");
    assert_eq!(
        shares(&[("v1", 1), ("v2", 1)]),
        shares(&[("v1", 50), ("v2", 50)])
    );

    // An unset weight among several is 0: everything to the other.
    let text = db_vs(
        "  tcp:
  - route:
    - {destination: {host: db.example.com, subset: primary}, weight: 30}
    - {destination: {host: db.example.com, subset: replica}}
",
    );
    let compiled = compile_ok(&text);
    let only_primary = compile_ok(&db_vs(
        "  tcp:
  - route:
    - {destination: {host: db.example.com, subset: primary}}
",
    ));
    assert_eq!(
        backends(&compiled, "10.0.0.10", 5432),
        backends(&only_primary, "10.0.0.10", 5432)
    );

    // All zero (set or not): Istio's validation error.
    for weights in ["weight: 0", ""] {
        let text = db_vs(&format!(
            "  tcp:
  - route:
    - {{destination: {{host: db.example.com, subset: primary}}, weight: 0}}
    - {{destination: {{host: db.example.com, subset: replica}}{}}}
",
            if weights.is_empty() {
                String::new()
            } else {
                format!(", {weights}")
            }
        ));
        let (compiled, _) = compile_text(&text);
        let message = single_error(&compiled, "VirtualService default/db", "spec.tcp[0].route");
        assert!(
            message.starts_with("total destination weight = 0"),
            "{message}"
        );
    }
}

/// Istio keeps a VirtualService whose rules match on the client: such a match block applies
/// only to matching clients, and until vsteer knows client workloads it matches none (a note);
/// the rest of the VirtualService applies.
#[test]
fn source_conditions_match_no_client_and_the_rest_applies() {
    let compiled = compile_ok(&db_vs(
        "  tcp:
  - match: [{port: 5432, sourceLabels: {app: web}}]
    route: [{destination: {host: db.example.com, subset: primary}}]
  - match: [{sourceNamespace: batch}, {port: 5432}]
    route: [{destination: {host: db.example.com, subset: replica}}]
",
    ));
    // tcp[0] matches no client; tcp[1]'s second block takes port 5432.
    assert_eq!(
        route(&compiled, "10.0.0.10", 5432).as_deref(),
        Some("VirtualService default/db tcp[1]")
    );
    assert_eq!(
        backends(&compiled, "10.0.0.10", 5432),
        expect(&[("10.2.0.2:5432", 1_000_000)])
    );
    for field in [
        "spec.tcp[0].match[0].sourceLabels",
        "spec.tcp[1].match[0].sourceNamespace",
    ] {
        assert!(
            has_note(
                &compiled,
                &format!("VirtualService default/db: {field}: matches no client")
            ),
            "{field}: {:?}",
            compiled.notes
        );
    }

    // HTTP: the seed's shape with a source condition on the jason rule.
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v3}}]
",
    ));
    assert_eq!(
        route(&compiled, "10.0.0.1", 9080).as_deref(),
        Some("VirtualService default/reviews http[1]")
    );
    let list = backends(&compiled, "10.0.0.1", 9080);
    assert_eq!(version_total(&list, 3), vsteer_plan::WEIGHT_SCALE);
}

#[test]
fn bad_destination_ports_are_rejected() {
    let (compiled, _) = compile_text(&db_vs(
        "  tcp:\n  - route: [{destination: {host: db.example.com, port: {number: 7000}}}]\n",
    ));
    let message = single_error(
        &compiled,
        "VirtualService default/db",
        "spec.tcp[0].route[0].destination.port.number",
    );
    assert!(
        message.contains("has no port 7000 (its ports: 5432, 6432)"),
        "{message}"
    );

    // web:80 routed to db, which has two ports and neither is 80.
    let text = format!(
        "{DB}{}{}",
        service_entry("web", &GOOD_SPEC.replace("protocol: HTTP", "protocol: TCP")),
        resource(
            "VirtualService",
            "web",
            "  hosts: [web.example.com]\n  tcp:\n  - route: [{destination: {host: db.example.com}}]\n"
        )
    );
    let (compiled, _) = compile_text(&text);
    let message = single_error(
        &compiled,
        "VirtualService default/web",
        "spec.tcp[0].route[0].destination.port",
    );
    assert!(
        message.starts_with("port required: host db.example.com has several ports"),
        "{message}"
    );
}

#[test]
fn bad_destination_subnet_is_rejected() {
    let (compiled, _) = compile_text(&db_vs(
        "  tcp:
  - match: [{destinationSubnets: [10.0.0.0/40]}]
    route: [{destination: {host: db.example.com}, weight: 100}]
",
    ));
    single_error(
        &compiled,
        "VirtualService default/db",
        "spec.tcp[0].match[0].destinationSubnets[0]",
    );
}

#[test]
fn plan_text_shows_each_rule_of_a_proxied_service() {
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match:
    - {uri: {prefix: /old}, method: {exact: GET}}
    - {queryParams: {v: {regex: '[0-9]+'}}}
    redirect: {uri: /new, redirectCode: 308, port: 8443}
  - match: [{withoutHeaders: {x-trace: {}}, ignoreUriCase: true, uri: {exact: /Health}}]
    directResponse: {status: 204}
  - fault: {abort: {httpStatus: 500, percentage: {value: 1}}}
    headers: {request: {set: {x-a: b}}}
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
",
    ));
    let text = vsteer_plan::render(&compiled.plan);
    for line in [
        r#"    http[0]  uri starts with "/old" and method = "GET" or queryParams[v] ~ "[0-9]+"  redirect 308 uri=/new port=8443"#,
        r#"    http[1]  uri (any case) = "/Health" and not headers[x-trace] present  respond 204"#,
        "    http[2]  any request  -> outbound|9080|v1|reviews.default.svc.cluster.local 90.0%, outbound|9080|v2|reviews.default.svc.cluster.local 10.0%  [headers, fault]",
        "  proxy: VirtualService default/reviews http[0].match[0].uri",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\nnot in\n{text}");
    }
}

#[test]
fn a_proxied_service_without_a_take_all_rule_says_what_happens_at_connect_time() {
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
",
    ));
    let (rules, decision) = served(&compiled, "10.0.0.1", 9080);
    assert_eq!(rules, ["http[0]"]);
    assert!(matches!(decision, Decision::Proxy { .. }));
    assert_eq!(
        compiled.notes,
        [
            "VirtualService default/reviews: no rule takes every request to 10.0.0.1:9080/TCP: the proxy serves its HTTP rules; at connect time (no proxy running, or the proxy's own connects) there is no backend and connects are refused"
        ]
    );
}

/// HTTP rules that all match another port leave this one to Istio's default route, in the
/// kernel (nothing here reads a request).
#[test]
fn a_port_no_http_rule_applies_to_takes_the_default_route() {
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{port: 9999, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{port: 9999}]
    route: [{destination: {host: reviews, subset: v3}}]
",
    ));
    assert_eq!(route(&compiled, "10.0.0.1", 9080), None);
    assert_eq!(backends(&compiled, "10.0.0.1", 9080).len(), 7);
    let (_, decision) = served(&compiled, "10.0.0.1", 9080);
    assert_eq!(decision, Decision::Kernel);
    assert!(
        has_note(&compiled, "no http rule applies to 10.0.0.1:9080/TCP"),
        "{:?}",
        compiled.notes
    );
}
