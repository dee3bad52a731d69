//! The shipped examples: Istio's Bookinfo reviews rule, steered at L4.

use super::*;

/// The files of `examples/` (the agent's embedded default config), in name order.
fn load_examples() -> Vec<vsteer_model::Resource> {
    let files = [
        (
            "details.yaml",
            include_str!("../../../examples/details.yaml"),
        ),
        (
            "ratings.yaml",
            include_str!("../../../examples/ratings.yaml"),
        ),
        (
            "reviews.yaml",
            include_str!("../../../examples/reviews.yaml"),
        ),
    ];
    let mut resources = Vec::new();
    for (name, text) in files {
        let parsed = parse_str(&format!("<embedded>/{name}"), text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        resources.extend(parsed.resources);
    }
    resources
}

#[test]
fn examples_compile_to_the_expected_plan() {
    let compiled = compile(&load_examples(), &Plan::default());
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    assert!(compiled.kept.is_empty());

    let keys: Vec<_> = compiled
        .plan
        .services()
        .map(|s| {
            (
                s.key.vip,
                s.key.port,
                s.key.protocol,
                s.host.to_string(),
                s.resource.to_string(),
            )
        })
        .collect();
    let expected = |list: [(IpAddr, u16, Protocol, &str, &str); 3]| {
        list.map(|(vip, port, protocol, host, resource)| {
            (vip, port, protocol, host.to_string(), resource.to_string())
        })
    };
    assert_eq!(
        keys,
        expected([
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
        ])
    );

    // The "end-user: jason" rule reads a header: the proxy serves reviews, with both rules;
    // at connect time (when the proxy does not take a connection) the default rule decides.
    let reviews = compiled
        .plan
        .get(ip("127.100.0.1"), 9080, Protocol::Tcp)
        .unwrap();
    assert_eq!(
        reviews.decision,
        Decision::Proxy {
            reason: "VirtualService default/reviews http[0].match[0].headers[end-user]".into()
        }
    );
    let table = reviews.http.as_ref().expect("an HTTP route table");
    assert_eq!(table.rules.len(), 2);
    let cluster_of = |rule: usize| match &table.rules[rule].action {
        vsteer_plan::http::HttpAction::Route {
            destinations: d, ..
        } => {
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].weight, WEIGHT_SCALE);
            let c = &table.clusters[d[0].cluster];
            let endpoints: Vec<String> = c
                .endpoints
                .iter()
                .map(|e| std::net::SocketAddr::new(e.address, e.port).to_string())
                .collect();
            (c.subset.as_deref().map(String::from), endpoints)
        }
        other => panic!("rule {rule}: {other:?}"),
    };
    assert_eq!(
        cluster_of(0),
        (Some("v2".to_string()), vec!["127.0.1.2:9080".to_string()])
    );
    assert_eq!(
        cluster_of(1),
        (Some("v3".to_string()), vec!["127.0.1.3:9080".to_string()])
    );
    assert_eq!(
        table.rules[0].matches[0].headers,
        [(
            "end-user".to_string(),
            vsteer_plan::http::StrMatch::Exact("jason".into())
        )]
    );
    assert!(table.rules[1].matches.is_empty());
    assert_eq!(
        reviews.route.as_ref().map(ToString::to_string).as_deref(),
        Some("VirtualService default/reviews http[1]")
    );
    assert_eq!(
        backends(&compiled, "127.100.0.1", 9080),
        expect(&[("127.0.1.3:9080", 1_000_000)])
    );
    assert_eq!(names(&reviews.backends[0].subsets), ["v3"]);
    assert_eq!(&reviews.backends[0].labels["app"], "reviews");
    assert!(compiled.notes.is_empty(), "{:?}", compiled.notes);

    assert_eq!(
        backends(&compiled, "127.100.0.2", 9080),
        expect(&[("127.0.2.1:9080", 800_000), ("127.0.2.2:9080", 200_000)])
    );
    assert_eq!(
        route(&compiled, "127.100.0.2", 9080).as_deref(),
        Some("VirtualService default/ratings tcp[0]")
    );
    assert_eq!(
        backends(&compiled, "127.100.0.3", 9080),
        expect(&[("127.0.3.1:9080", 1_000_000)])
    );

    let table = vsteer_plan::render(&compiled.plan);
    let lines: Vec<&str> = table.lines().collect();
    let squash = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(lines.len(), 13, "{table}");
    let expected = [
        "127.100.0.1:9080 TCP reviews.default.svc.cluster.local route: VirtualService default/reviews http[1] lb: RANDOM",
        "proxy: VirtualService default/reviews http[0].match[0].headers[end-user]",
        r#"http[0] headers[end-user] = "jason" -> outbound|9080|v2|reviews.default.svc.cluster.local 100.0%"#,
        "http[1] any request -> outbound|9080|v3|reviews.default.svc.cluster.local 100.0%",
        "at connect time, when the proxy does not take it:",
        "127.0.1.3:9080 100.0% subsets: v3 labels: app=reviews,version=v3",
        "",
        "127.100.0.2:9080 TCP ratings.default.svc.cluster.local route: VirtualService default/ratings tcp[0] lb: RANDOM",
        "127.0.2.1:9080 80.0% subsets: v1 labels: app=ratings,version=v1",
        "127.0.2.2:9080 20.0% subsets: v2 labels: app=ratings,version=v2",
    ];
    for (i, line) in expected.iter().enumerate() {
        assert_eq!(squash(lines[i]), *line, "line {i} of\n{table}");
    }
}
