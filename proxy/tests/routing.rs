//! Routing as Istio specifies it, through the real proxy on loopback: the seed example over
//! HTTP/1.1 and HTTP/2, every match kind, weighted routes, load balancers, redirects,
//! rewrites, header operations, direct responses and the 503s.

mod support;

use std::collections::BTreeMap;

use support::*;
use vsteer_plan::{Protocol, ServiceKey};

const VIP: &str = "127.100.0.1:9080";
const HOST: &str = "reviews.default.svc.cluster.local:9080";

async fn reviews(vs_http: &str, policy: &str) -> (Vec<Backend>, vsteer_plan::Plan) {
    let backends = vec![
        Backend::start("v1").await,
        Backend::start("v2").await,
        Backend::start("v3").await,
    ];
    let plan = reviews_plan(&backends, vs_http, policy);
    (backends, plan)
}

/// reviews over `backends` (v1, v2, v3) with `vs_http` and `policy`.
fn reviews_plan(backends: &[Backend], vs_http: &str, policy: &str) -> vsteer_plan::Plan {
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "HTTP",
        &[
            (&backends[0], "v1"),
            (&backends[1], "v2"),
            (&backends[2], "v3"),
        ],
    ) + &destination_rule("reviews", &["v1", "v2", "v3"], policy)
        + &virtual_service("reviews", vs_http);
    plan_from_yaml(&yaml)
}

/// [`reviews`] with `vs_http` and no policy, served by a proxy, and a client on it.
async fn reviews_over_h1(vs_http: &str) -> (Vec<Backend>, Harness, H1) {
    let (backends, plan) = reviews(vs_http, "").await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let client = H1::connect(proxy.addr).await;
    (backends, proxy, client)
}

const SEED: &str = "  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v3
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_alternates_on_one_http1_connection() {
    let (_backends, proxy, mut client) = reviews_over_h1(SEED).await;
    for i in 0..20 {
        let jason = i % 2 == 0;
        let headers: &[(&str, &str)] = if jason { &[("end-user", "jason")] } else { &[] };
        let reply = client.get(HOST, "/reviews/1", headers).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.backend(),
            if jason { "v2" } else { "v3" },
            "request {i}"
        );
    }
    let stats = proxy.stats.snapshot();
    assert_eq!(
        stats.connections_accepted, 1,
        "one keep-alive connection: {stats:?}"
    );
    assert_eq!(stats.responses[1], 20);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_http2_prior_knowledge() {
    let (_backends, plan) = reviews(SEED, "").await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H2::connect(proxy.addr).await;
    for i in 0..20 {
        let jason = i % 2 == 0;
        let headers: &[(&str, &str)] = if jason { &[("end-user", "jason")] } else { &[] };
        let reply = client.get(HOST, "/reviews/1", headers).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.backend(),
            if jason { "v2" } else { "v3" },
            "stream {i}"
        );
        // An HTTP/1.1 port: the upstream request is HTTP/1.1 with the authority as Host.
        assert_eq!(reply.seen("version"), Some("HTTP/1.1"));
        assert_eq!(reply.seen("authority"), Some(HOST));
    }
    // Concurrent streams on the one connection are routed one by one too.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let jason = i % 2 == 0;
            let headers: &[(&str, &str)] = if jason { &[("end-user", "jason")] } else { &[] };
            let reply = c.get(HOST, "/", headers).await;
            (jason, reply.backend().to_string())
        }));
    }
    for t in tasks {
        let (jason, backend) = t.await.unwrap();
        assert_eq!(backend, if jason { "v2" } else { "v3" });
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_and_hop_by_hop_headers() {
    let (_backends, proxy, mut client) = reviews_over_h1(SEED).await;
    let reply = client
        .get(
            HOST,
            "/",
            &[
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "yes"),
            ],
        )
        .await;
    assert_eq!(reply.seen_header("x-forwarded-proto"), ["http"]);
    assert_eq!(reply.seen_header("x-forwarded-for"), ["127.0.0.1"]);
    let id = reply.seen_header("x-request-id");
    assert_eq!(id.len(), 1);
    assert_eq!(id[0].len(), 36, "a UUID: {id:?}");
    assert!(reply.seen_header("x-secret").is_empty(), "{}", reply.body);
    assert!(reply.seen_header("keep-alive").is_empty(), "{}", reply.body);
    assert_eq!(reply.seen_header("x-kept"), ["yes"]);
    // A request id the client sent is kept.
    let reply = client.get(HOST, "/", &[("x-request-id", "mine")]).await;
    assert_eq!(reply.seen_header("x-request-id"), ["mine"]);
    proxy.stop().await;
}

/// Every match kind, each rule answering its name with a direct response.
const MATCHES: &str = r#"  - match: [{uri: {exact: /exact}}]
    directResponse: {status: 200, body: {string: exact}}
  - match: [{uri: {prefix: /prefix}}]
    directResponse: {status: 200, body: {string: prefix}}
  - match: [{uri: {regex: "/re/[0-9]+"}}]
    directResponse: {status: 200, body: {string: regex}}
  - match: [{uri: {exact: /case}, ignoreUriCase: true}]
    directResponse: {status: 200, body: {string: ignorecase}}
  - match: [{method: {exact: POST}, uri: {prefix: /m}}]
    directResponse: {status: 200, body: {string: post}}
  - match: [{authority: {prefix: other}}]
    directResponse: {status: 200, body: {string: authority}}
  - match: [{scheme: {exact: http}, uri: {prefix: /scheme}}]
    directResponse: {status: 200, body: {string: scheme}}
  - match: [{headers: {x-exact: {exact: a}}}]
    directResponse: {status: 200, body: {string: h-exact}}
  - match: [{headers: {x-prefix: {prefix: pre}}}]
    directResponse: {status: 200, body: {string: h-prefix}}
  - match: [{headers: {x-regex: {regex: "v[0-9]"}}}]
    directResponse: {status: 200, body: {string: h-regex}}
  - match: [{headers: {x-present: {}}}]
    directResponse: {status: 200, body: {string: h-present}}
  - match: [{queryParams: {q: {exact: "1"}}}]
    directResponse: {status: 200, body: {string: q-exact}}
  - match: [{queryParams: {r: {regex: "[a-c]+"}}}]
    directResponse: {status: 200, body: {string: q-regex}}
  - match: [{queryParams: {raw: {exact: "a%20b"}}}]
    directResponse: {status: 200, body: {string: q-raw}}
  - match: [{queryParams: {user: {exact: "x"}}}]
    directResponse: {status: 200, body: {string: q-user}}
  - match: [{uri: {prefix: /without}, withoutHeaders: {x-deny: {exact: "yes"}}}]
    directResponse: {status: 200, body: {string: without}}
  - match: [{headers: {x-a: {exact: "1"}, x-b: {exact: "2"}}}]
    directResponse: {status: 200, body: {string: and}}
  - match: [{headers: {x-or: {exact: one}}}, {headers: {x-or: {exact: two}}}]
    directResponse: {status: 200, body: {string: or}}
  - match: [{uri: {prefix: /first}}]
    directResponse: {status: 200, body: {string: first}}
  - match: [{uri: {prefix: /first}}]
    directResponse: {status: 200, body: {string: second}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_match_kind_or_and_first_match_and_404() {
    let (_backends, proxy, mut client) = reviews_over_h1(MATCHES).await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        ("GET", "/exact", &[], Some("exact")),
        ("GET", "/exact?x=1", &[], Some("exact")),
        ("GET", "/exactly", &[], None),
        ("GET", "/prefix/abc", &[], Some("prefix")),
        ("GET", "/re/123", &[], Some("regex")),
        // Anchored: the regex must match the whole path.
        ("GET", "/re/123x", &[], None),
        ("GET", "/x/re/1", &[], None),
        ("GET", "/case", &[], Some("ignorecase")),
        ("GET", "/CaSe", &[], Some("ignorecase")),
        ("POST", "/m", &[], Some("post")),
        ("GET", "/m", &[], None),
        ("GET", "/scheme", &[], Some("scheme")),
        ("GET", "/", &[("x-exact", "a")], Some("h-exact")),
        ("GET", "/", &[("x-exact", "ab")], None),
        ("GET", "/", &[("x-prefix", "prefix1")], Some("h-prefix")),
        ("GET", "/", &[("x-regex", "v1")], Some("h-regex")),
        ("GET", "/", &[("x-regex", "xv1")], None),
        ("GET", "/", &[("x-present", "")], Some("h-present")),
        ("GET", "/?q=1", &[], Some("q-exact")),
        ("GET", "/?q=12", &[], None),
        ("GET", "/?z=0&r=abc", &[], Some("q-regex")),
        ("GET", "/?r=abcd", &[], None),
        // Query parameters are compared as sent, never percent-decoded (Envoy's matcher).
        ("GET", "/?user=x", &[], Some("q-user")),
        ("GET", "/?%75ser=x", &[], None),
        ("GET", "/?raw=a%20b", &[], Some("q-raw")),
        ("GET", "/?raw=a+b", &[], None),
        ("GET", "/?user=%78", &[], None),
        ("GET", "/without", &[], Some("without")),
        ("GET", "/without", &[("x-deny", "no")], Some("without")),
        ("GET", "/without", &[("x-deny", "yes")], None),
        ("GET", "/", &[("x-a", "1"), ("x-b", "2")], Some("and")),
        ("GET", "/", &[("x-a", "1")], None),
        ("GET", "/", &[("x-or", "one")], Some("or")),
        ("GET", "/", &[("x-or", "two")], Some("or")),
        ("GET", "/", &[("x-or", "three")], None),
        ("GET", "/first", &[], Some("first")),
        ("GET", "/nothing", &[], None),
    ];
    for (method, path, headers, expected) in cases {
        let mut all = vec![("host", HOST)];
        all.extend_from_slice(headers);
        let reply = client
            .send(request(method, path, &all, empty()))
            .await
            .expect("a response");
        match expected {
            Some(name) => {
                assert_eq!(reply.status, 200, "{method} {path} {headers:?}");
                assert_eq!(reply.body, *name, "{method} {path} {headers:?}");
                assert_eq!(reply.headers["content-type"], "text/plain");
            }
            None => {
                assert_eq!(
                    reply.status, 404,
                    "{method} {path} {headers:?}: {}",
                    reply.body
                );
                assert_eq!(reply.body, "", "Envoy's 404 has no body");
            }
        }
    }
    let reply = client.get("other.example", "/zzz", &[]).await;
    assert_eq!(reply.body, "authority");
    let misses = cases.iter().filter(|c| c.3.is_none()).count() as u64;
    assert_eq!(proxy.stats.snapshot().no_route, misses);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_90_10_route_passes_chi_square_over_keep_alive_connections() {
    let vs = "  - match: [{uri: {prefix: /}}]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
";
    let (_backends, plan) = reviews(vs, "").await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 2_500;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = H1::connect(addr).await;
            let mut counts = [0u64; 2];
            for _ in 0..PER_CONNECTION {
                match client.get(HOST, "/", &[]).await.backend() {
                    "v1" => counts[0] += 1,
                    "v2" => counts[1] += 1,
                    other => panic!("unexpected backend {other:?}"),
                }
            }
            counts
        }));
    }
    let mut counts = [0u64; 2];
    for t in tasks {
        let c = t.await.unwrap();
        counts[0] += c[0];
        counts[1] += c[1];
    }
    assert_eq!(
        counts.iter().sum::<u64>(),
        (CONNECTIONS * PER_CONNECTION) as u64
    );
    vsteer_testkit::stats::assert_split(&counts, &[90.0, 10.0]).unwrap();
    assert_eq!(
        proxy.stats.snapshot().connections_accepted,
        CONNECTIONS as u64
    );
    proxy.stop().await;
}

/// One subset `all` with every endpoint, and a rule the kernel cannot serve.
fn all_to_one_subset(extra: &str) -> String {
    format!(
        "  - match: [{{uri: {{prefix: /}}}}]
    route:
    - destination: {{host: reviews, subset: all}}
{extra}"
    )
}

async fn three_in_one_subset(policy: &str) -> (Vec<Backend>, vsteer_plan::Plan) {
    three_in_one_subset_with(policy, "").await
}

/// [`three_in_one_subset`] with `extra` fields on the VirtualService's rule.
async fn three_in_one_subset_with(policy: &str, extra: &str) -> (Vec<Backend>, vsteer_plan::Plan) {
    let backends = vec![
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "HTTP",
        &[
            (&backends[0], "x"),
            (&backends[1], "x"),
            (&backends[2], "x"),
        ],
    ) + &format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - name: all
    labels: {{version: x}}
    trafficPolicy:
{policy}---
"
    ) + &virtual_service("reviews", &all_to_one_subset(extra));
    (backends, plan_from_yaml(&yaml))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_an_exact_rotation() {
    let (_b, plan) = three_in_one_subset("      loadBalancer: {simple: ROUND_ROBIN}\n").await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(client.get(HOST, "/", &[]).await.backend().to_string());
    }
    let first: Vec<&String> = seen[..3].iter().collect();
    assert!(
        first[0] != first[1] && first[1] != first[2] && first[0] != first[2],
        "{seen:?}"
    );
    for (i, name) in seen.iter().enumerate() {
        assert_eq!(name, &seen[i % 3], "request {i}: {seen:?}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_idle_endpoint() {
    let backends = vec![Backend::start("a").await, Backend::start("b").await];
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "HTTP",
        &[(&backends[0], "x"), (&backends[1], "x")],
    ) + &destination_rule(
        "reviews",
        &["x"],
        "    loadBalancer: {simple: LEAST_REQUEST}\n",
    ) + &virtual_service(
        "reviews",
        "  - match: [{uri: {prefix: /}}]\n    route:\n    - destination: {host: reviews, subset: x}\n",
    );
    let plan = plan_from_yaml(&yaml);
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    // One request held on whichever endpoint it reaches.
    let addr = proxy.addr;
    let held = tokio::spawn(async move {
        let mut client = H1::connect(addr).await;
        client.get(HOST, "/hold", &[]).await.backend().to_string()
    });
    eventually("a request is held", || {
        backends.iter().map(Backend::held).sum::<usize>() == 1
    })
    .await;
    let busy = if backends[0].held() == 1 { "a" } else { "b" };
    let idle = if busy == "a" { "b" } else { "a" };
    let mut client = H1::connect(proxy.addr).await;
    for i in 0..50 {
        assert_eq!(
            client.get(HOST, "/", &[]).await.backend(),
            idle,
            "request {i}"
        );
    }
    for b in &backends {
        b.release(1);
    }
    assert_eq!(held.await.unwrap(), busy);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_header_stays_and_moves_few_keys() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    ];
    let yaml = |n: usize| {
        let eps: Vec<(&Backend, &str)> = backends[..n].iter().map(|b| (b, "x")).collect();
        service_entry("reviews", "127.100.0.1", 9080, "HTTP", &eps)
            + &destination_rule(
                "reviews",
                &["x"],
                "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n",
            )
            + &virtual_service(
                "reviews",
                "  - route:\n    - destination: {host: reviews, subset: x}\n",
            )
    };
    let plan = plan_from_yaml(&yaml(4));
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let mut owner = BTreeMap::new();
    for user in 0..60 {
        let user = format!("user-{user}");
        let first = client
            .get(HOST, "/", &[("x-user", &user)])
            .await
            .backend()
            .to_string();
        for _ in 0..3 {
            assert_eq!(
                client.get(HOST, "/", &[("x-user", &user)]).await.backend(),
                first,
                "{user}"
            );
        }
        owner.insert(user, first);
    }
    let used: std::collections::BTreeSet<&String> = owner.values().collect();
    assert!(
        used.len() >= 3,
        "60 keys spread over the endpoints: {owner:?}"
    );
    // Endpoint d leaves: only its keys move.
    let smaller = plan_from_yaml(&yaml(3));
    proxy.tables.update(
        &smaller,
        &[ServiceKey::new(
            "127.100.0.1".parse().unwrap(),
            9080,
            Protocol::Tcp,
        )],
    );
    for (user, before) in &owner {
        let now = client
            .get(HOST, "/", &[("x-user", user)])
            .await
            .backend()
            .to_string();
        if before != "d" {
            assert_eq!(&now, before, "{user} moved off a remaining endpoint");
        } else {
            assert_ne!(now, "d");
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_cookie_query_and_source_ip() {
    // Cookie: set when absent, with its ttl, and followed afterwards.
    let (_b, plan) = three_in_one_subset(
        "      loadBalancer: {consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}}}\n",
    )
    .await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    for _ in 0..10 {
        let first = client.get(HOST, "/", &[]).await;
        let cookie = first.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("session=\""), "{cookie}");
        assert!(
            cookie.ends_with("; Max-Age=60; Path=/; HttpOnly"),
            "{cookie}"
        );
        let value = cookie.split(';').next().unwrap().to_string();
        for _ in 0..3 {
            let again = client.get(HOST, "/", &[("cookie", &value)]).await;
            assert_eq!(again.backend(), first.backend(), "{value}");
            assert!(again.headers.get("set-cookie").is_none());
        }
    }
    proxy.stop().await;

    let (_b, plan) = three_in_one_subset(
        "      loadBalancer: {consistentHash: {httpQueryParameterName: uid}}\n",
    )
    .await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    for uid in 0..20 {
        let path = format!("/items?uid={uid}");
        let first = client.get(HOST, &path, &[]).await.backend().to_string();
        for _ in 0..3 {
            assert_eq!(client.get(HOST, &path, &[]).await.backend(), first);
        }
    }
    proxy.stop().await;

    let (_b, plan) =
        three_in_one_subset("      loadBalancer: {consistentHash: {useSourceIp: true}}\n").await;
    let proxy = Harness::start(&plan, by_peer_ip(&[("127.0.2.1", VIP), ("127.0.2.2", VIP)])).await;
    for from in ["127.0.2.1", "127.0.2.2"] {
        let mut first = None;
        // New connections (new source ports) from one IP keep their endpoint.
        for _ in 0..5 {
            let mut client = H1::connect_from(Some(from.parse().unwrap()), proxy.addr).await;
            let got = client.get(HOST, "/", &[]).await.backend().to_string();
            assert_eq!(first.get_or_insert(got.clone()), &got, "{from}");
        }
    }
    proxy.stop().await;
}

const ACTIONS: &str = r#"  - match: [{uri: {prefix: /r1}}]
    redirect: {uri: /new}
  - match: [{uri: {prefix: /r2}}]
    redirect: {authority: other.example, redirectCode: 302}
  - match: [{uri: {prefix: /r3}}]
    redirect: {scheme: https, redirectCode: 307}
  - match: [{uri: {prefix: /r4}}]
    redirect: {port: 8443, redirectCode: 308}
  - match: [{uri: {prefix: /r5}}]
    redirect: {derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /r6}}]
    redirect: {uri: /six, redirectCode: 303}
  - match: [{uri: {prefix: /r7/}}]
    redirect: {prefixRewrite: /seven/}
  - match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /exact}}]
    rewrite: {uri: /replaced}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /re/}}]
    rewrite: {uriRegexRewrite: {match: "^/re/([^/]+)/(.*)$", rewrite: "/\\2/\\1"}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /auth}}]
    rewrite: {authority: new-host}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
    headers: {response: {set: {x-direct: "yes"}}}
  - match: [{uri: {prefix: /empty}}]
    route: [{destination: {host: reviews, subset: v9}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_rewrites_and_direct_responses() {
    let (_backends, mut_plan) = {
        let backends = vec![Backend::start("v1").await];
        let yaml = service_entry(
            "reviews",
            "127.100.0.1",
            9080,
            "HTTP",
            &[(&backends[0], "v1")],
        ) + &destination_rule("reviews", &["v1", "v9"], "")
            + &virtual_service("reviews", ACTIONS);
        (backends, plan_from_yaml(&yaml))
    };
    let proxy = Harness::start(&mut_plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let redirects = [
        (
            "/r1?q=1",
            "reviews:9080",
            301,
            "http://reviews:9080/new?q=1",
        ),
        ("/r2", "reviews:9080", 302, "http://other.example/r2"),
        ("/r3", "reviews:9080", 307, "https://reviews:9080/r3"),
        ("/r3", "reviews:80", 307, "https://reviews/r3"),
        ("/r4", "reviews:9080", 308, "http://reviews:8443/r4"),
        ("/r5", "reviews", 301, "http://reviews:9080/r5"),
        ("/r6?x=1", "reviews", 303, "http://reviews/six?x=1"),
        (
            "/r7/a/b?x=1",
            "reviews",
            301,
            "http://reviews/seven/a/b?x=1",
        ),
    ];
    for (path, host, code, location) in redirects {
        let reply = client.get(host, path, &[]).await;
        assert_eq!(reply.status, code, "{path}");
        assert_eq!(reply.headers["location"], location, "{path}");
        assert_eq!(reply.body, "");
    }
    let rewrites = [
        ("/old/x?y=1", "path", "/new/x?y=1"),
        ("/exact", "path", "/replaced"),
        ("/re/a/b/c?k=v", "path", "/b/c/a?k=v"),
        ("/auth", "authority", "new-host"),
    ];
    for (path, what, expected) in rewrites {
        let reply = client.get(HOST, path, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(reply.seen(what), Some(expected), "{path}: {}", reply.body);
    }
    let teapot = client.get(HOST, "/teapot", &[]).await;
    assert_eq!(teapot.status, 418);
    assert_eq!(teapot.body, "short and stout");
    assert_eq!(teapot.headers["content-type"], "text/plain");
    assert_eq!(teapot.headers["x-direct"], "yes");
    let empty = client.get(HOST, "/empty", &[]).await;
    assert_eq!(empty.status, 503);
    assert_eq!(empty.body, "no healthy upstream");
    assert_eq!(proxy.stats.snapshot().no_healthy_upstream, 1);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_operations_at_rule_and_destination_level() {
    let single = r#"  - match: [{uri: {prefix: /single}}]
    headers:
      request:
        set: {x-rule: r, x-both: rule, host: from-op}
        add: {x-multi: rule}
        remove: [x-drop]
      response:
        set: {x-resp-rule: r}
        remove: [x-upstream-set]
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request:
          set: {x-dest: d, x-both: dest}
          add: {x-multi: dest}
        response:
          add: {x-resp-dest: d}
  - match: [{uri: {prefix: /weighted}}]
    headers:
      request: {set: {x-both: rule}}
      response: {set: {x-resp-both: rule}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
      headers:
        request: {set: {x-both: dest}}
        response: {set: {x-resp-both: dest}}
    - destination: {host: reviews, subset: v2}
      weight: 50
      headers:
        request: {set: {x-both: dest}}
        response: {set: {x-resp-both: dest}}
  - match: [{uri: {prefix: /zero}}]
    headers:
      request: {set: {x-both: rule}}
      response: {set: {x-resp-both: rule}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 100
      headers:
        request: {set: {x-both: dest}}
        response: {set: {x-resp-both: dest}}
    - destination: {host: reviews, subset: v2}
      weight: 0
"#;
    let (_backends, proxy, mut client) = reviews_over_h1(single).await;
    let reply = client
        .get(HOST, "/single", &[("x-drop", "1"), ("x-multi", "client")])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.seen_header("x-rule"), ["r"]);
    assert_eq!(reply.seen_header("x-dest"), ["d"]);
    // A single destination's operations join the rule's level after the rule's own.
    assert_eq!(reply.seen_header("x-both"), ["dest"]);
    assert_eq!(reply.seen_header("x-multi"), ["client", "rule", "dest"]);
    assert!(reply.seen_header("x-drop").is_empty());
    // `host` in a header operation is an authority rewrite.
    assert_eq!(reply.seen("authority"), Some("from-op"));
    assert_eq!(reply.headers["x-resp-rule"], "r");
    assert_eq!(reply.headers["x-resp-dest"], "d");
    assert!(reply.headers.get("x-upstream-set").is_none());
    assert_eq!(reply.headers["x-backend"], "v1");
    // Weighted destinations are a level of their own, applied before the rule's: the rule's
    // `set` wins (Envoy's default order, which Istio keeps).
    for _ in 0..10 {
        let reply = client.get(HOST, "/weighted", &[]).await;
        assert_eq!(reply.seen_header("x-both"), ["rule"], "{}", reply.body);
        assert_eq!(reply.headers["x-resp-both"], "rule");
    }
    // Two destinations, one of weight 0: still weighted for Istio (it counts the route's
    // entries before it drops zero weights), so the rule's level applies last again.
    for _ in 0..10 {
        let reply = client.get(HOST, "/zero", &[]).await;
        assert_eq!(reply.backend(), "v1");
        assert_eq!(reply.seen_header("x-both"), ["rule"], "{}", reply.body);
        assert_eq!(reply.headers["x-resp-both"], "rule");
    }
    proxy.stop().await;
}

/// A port on `ip` with nothing behind it: bound, noted, let go.
fn closed_port(ip: &str) -> u16 {
    let closed = std::net::TcpListener::bind((ip, 0)).unwrap();
    closed.local_addr().unwrap().port()
}

/// A ServiceEntry for reviews at 127.100.0.1:9080 (port name `web`) with `endpoints`.
fn reviews_entry(endpoints: &[(std::net::IpAddr, u16)]) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [127.100.0.1]
  ports: [{number: 9080, name: web, protocol: HTTP}]
  resolution: STATIC
  endpoints:
",
    );
    for (ip, port) in endpoints {
        yaml.push_str(&format!("  - address: {ip}\n    ports: {{web: {port}}}\n"));
    }
    yaml + "---\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connect_failure_is_503() {
    let dead = ("127.0.1.250".parse().unwrap(), closed_port("127.0.1.250"));
    let yaml = reviews_entry(&[dead])
        + &virtual_service(
            "reviews",
            "  - match: [{uri: {prefix: /}}]\n    route: [{destination: {host: reviews}}]\n",
        );
    let plan = plan_from_yaml(&yaml);
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let reply = client.get(HOST, "/", &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    );
    // The proxy keeps serving the connection.
    let again = client.get(HOST, "/", &[]).await;
    assert_eq!(again.status, 503);
    let stats = proxy.stats.snapshot();
    assert_eq!(stats.upstream_connect_errors, 2, "{stats:?}");
    assert_eq!(stats.responses[4], 2);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_rule_hash_without_a_virtual_service_is_served() {
    // Istio's sticky sessions: only a DestinationRule; the default route takes every request.
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let eps: Vec<(&Backend, &str)> = backends.iter().map(|b| (b, "x")).collect();
    let yaml = service_entry("reviews", "127.100.0.1", 9080, "HTTP", &eps)
        + "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
";
    let plan = plan_from_yaml(&yaml);
    let service = plan
        .service(&ServiceKey::new(
            "127.100.0.1".parse().unwrap(),
            9080,
            Protocol::Tcp,
        ))
        .unwrap();
    assert!(matches!(
        service.decision,
        vsteer_plan::Decision::Proxy { .. }
    ));
    assert!(service.http.is_some(), "a proxied service needs a table");
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let mut used = std::collections::BTreeSet::new();
    for user in 0..30 {
        let user = format!("u{user}");
        let first = client
            .get(HOST, "/", &[("x-user", &user)])
            .await
            .backend()
            .to_string();
        for _ in 0..3 {
            assert_eq!(
                client.get(HOST, "/", &[("x-user", &user)]).await.backend(),
                first
            );
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "{used:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_expand_envoy_command_operators() {
    let vs = r#"  - match: [{uri: {prefix: /format}}]
    headers:
      request:
        set:
          x-client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
          x-client-full: "%DOWNSTREAM_REMOTE_ADDRESS%"
          x-dialed: "%DOWNSTREAM_LOCAL_ADDRESS%"
          x-pct: "100%%"
          x-proto: "%PROTOCOL%"
          x-user: "user=%REQ(end-user?x-alt):3%"
          x-up: "%UPSTREAM_REMOTE_ADDRESS%"
          x-host: "%HOSTNAME%"
          x-none: "%DOWNSTREAM_TLS_VERSION%"
          x-time: "%START_TIME(%s)%"
      response:
        set:
          x-resp-user: "%REQ(end-user)%"
          x-resp-cluster: "%UPSTREAM_CLUSTER%"
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /direct}}]
    headers: {response: {add: {x-echo: "%REQ(end-user)% via %PROTOCOL%"}}}
    directResponse: {status: 200}
"#;
    let (backends, proxy, mut client) = reviews_over_h1(vs).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reply = client.get(HOST, "/format", &[("end-user", "jason")]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.seen_header("x-client"),
        ["127.0.0.1"],
        "{}",
        reply.body
    );
    let full = reply.seen_header("x-client-full");
    assert!(
        full.len() == 1 && full[0].starts_with("127.0.0.1:"),
        "{full:?}"
    );
    assert_eq!(reply.seen_header("x-dialed"), [VIP]);
    assert_eq!(reply.seen_header("x-pct"), ["100%"]);
    assert_eq!(reply.seen_header("x-proto"), ["HTTP/1.1"]);
    assert_eq!(reply.seen_header("x-user"), ["user=jas"]);
    assert_eq!(
        reply.seen_header("x-up"),
        [backends[0].addr.to_string().as_str()]
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(reply.seen_header("x-host"), [hostname.trim()]);
    // An operator without a value here expands to nothing: no header at all.
    assert!(reply.seen_header("x-none").is_empty(), "{}", reply.body);
    let time: u64 = reply.seen_header("x-time")[0].parse().unwrap();
    assert!(time >= before && time <= before + 60, "{time}");
    assert_eq!(reply.headers["x-resp-user"], "jason");
    assert_eq!(
        reply.headers["x-resp-cluster"],
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    // The alternative header, when the first is absent.
    let reply = client.get(HOST, "/format", &[("x-alt", "bob")]).await;
    assert_eq!(reply.seen_header("x-user"), ["user=bob"]);
    // Local replies' response operations too.
    let reply = client.get(HOST, "/direct", &[("end-user", "ann")]).await;
    assert_eq!(reply.headers["x-echo"], "ann via HTTP/1.1");
    // Over HTTP/2 the protocol says so.
    let mut h2 = H2::connect(proxy.addr).await;
    let reply = h2.get(HOST, "/format", &[]).await;
    assert_eq!(reply.seen_header("x-proto"), ["HTTP/2"]);
    proxy.stop().await;
}

const FAULTS: &str = r#"  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      abort: {httpStatus: 500, percentage: {value: 100}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /slow}}]
    fault:
      delay: {fixedDelay: 300ms, percentage: {value: 100}}
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /half}}]
    fault:
      abort: {httpStatus: 503, percentage: {value: 30}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /grpc}}]
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /never}}]
    fault:
      abort: {httpStatus: 500, percentage: {value: 0}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v3}}]
"#;

/// Fault injection as Envoy's fault filter applies it, after the rule is matched: an abort
/// answers with its status and Envoy's body without reaching a backend (a gRPC status as a
/// trailers-only gRPC reply), a delay holds the request that long before routing it, and a
/// percentage aborts that share of requests (chi-square).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_abort_and_delay_the_share_of_requests_they_name() {
    let (_backends, proxy, mut client) = reviews_over_h1(FAULTS).await;

    let aborted = client.get(HOST, "/", &[("end-user", "jason")]).await;
    assert_eq!(aborted.status, 500);
    assert_eq!(aborted.body, "fault filter abort");
    let other = client.get(HOST, "/", &[("end-user", "someone")]).await;
    assert_eq!((other.status.as_u16(), other.backend()), (200, "v3"));

    let started = std::time::Instant::now();
    let slow = client.get(HOST, "/slow", &[]).await;
    assert_eq!((slow.status.as_u16(), slow.backend()), (200, "v2"));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );

    let grpc = client
        .get(HOST, "/grpc", &[("content-type", "application/grpc")])
        .await;
    assert_eq!(grpc.status, 200);
    assert_eq!(grpc.headers["grpc-status"], "14");
    assert_eq!(grpc.headers["grpc-message"], "fault filter abort");

    let never = client.get(HOST, "/never", &[]).await;
    assert_eq!((never.status.as_u16(), never.backend()), (200, "v1"));

    const REQUESTS: u64 = 2_000;
    let mut counts = [0u64; 2];
    for _ in 0..REQUESTS {
        match client.get(HOST, "/half", &[]).await.status.as_u16() {
            503 => counts[0] += 1,
            200 => counts[1] += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    vsteer_testkit::stats::assert_split(&counts, &[30.0, 70.0]).unwrap();

    let stats = proxy.stats.snapshot();
    assert_eq!(stats.faults_delayed, 1);
    assert_eq!(stats.faults_aborted, 2 + counts[0]);
    proxy.stop().await;
}

const TIMEOUTS: &str = r#"  - match: [{headers: {x-timeout: {exact: short}}}]
    timeout: 300ms
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{headers: {x-timeout: {exact: none}}}]
    timeout: 0s
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v2}}]
"#;

/// A route's `timeout`, as Envoy's: 504 `upstream request timeout` when no response came in
/// time (the upstream request is dropped), a reset when the body stalls past it, nothing
/// for a response in time; `0s` disables it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_answers_504_and_bounds_the_body() {
    let (backends, proxy, mut client) = reviews_over_h1(TIMEOUTS).await;
    let short = [("x-timeout", "short")];
    let quick = client.get(HOST, "/x", &short).await;
    assert_eq!((quick.status.as_u16(), quick.backend()), (200, "v1"));

    let started = std::time::Instant::now();
    let late = client.get(HOST, "/hold", &short).await;
    assert_eq!(late.status, 504);
    assert_eq!(late.body, "upstream request timeout");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(proxy.stats.snapshot().upstream_timeouts, 1);

    // Headers in time, then a body that stalls: the stream is cut at the timeout.
    let mut fresh = H1::connect(proxy.addr).await;
    let request = vsteer_testkit::http::request(
        "GET",
        "/stall-body",
        &[("host", HOST), ("x-timeout", "short")],
        vsteer_testkit::http::empty(),
    );
    let response = fresh
        .send_raw(request)
        .await
        .expect("the headers came in time");
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(body.is_err(), "a stalled body was not cut");

    // 0s: no timeout, a held request waits for its answer.
    let mut waiting = H1::connect(proxy.addr).await;
    let held =
        tokio::spawn(async move { waiting.get(HOST, "/hold", &[("x-timeout", "none")]).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!held.is_finished());
    // Two: the request the proxy gave up on above may still hold the backend's first.
    backends[0].release(2);
    let answered = held.await.unwrap();
    assert_eq!((answered.status.as_u16(), answered.backend()), (200, "v1"));
    proxy.stop().await;
}

/// reviews with a dead endpoint (nothing listens) and a live one, and a VirtualService
/// whose one rule has `retries` as given (or none).
async fn dead_and_live(retries: &str) -> (Backend, vsteer_plan::Plan) {
    let live = Backend::start("live").await;
    let dead = ("127.0.1.251".parse().unwrap(), closed_port("127.0.1.251"));
    let yaml = reviews_entry(&[dead, (live.addr.ip(), live.addr.port())])
        + &virtual_service(
            "reviews",
            &format!(
                "  - match: [{{uri: {{prefix: /}}}}]\n{retries}    route: [{{destination: {{host: reviews}}}}]\n"
            ),
        );
    (live, plan_from_yaml(&yaml))
}

/// Istio's default retry policy (a rule without `retries`: 2 retries on connect-failure,
/// ...): a request whose endpoint refuses the connection is tried on another endpoint, so
/// a dead endpoint costs no request; `attempts: 0` turns that off, and the dead endpoint's
/// share gets 503s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_is_retried_on_another_endpoint() {
    const REQUESTS: u64 = 200;
    let (_live, plan) = dead_and_live("").await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    for _ in 0..REQUESTS {
        let reply = client.get(HOST, "/", &[]).await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, "live"));
    }
    let stats = proxy.stats.snapshot();
    assert!(
        stats.retries > 0,
        "no request picked the dead endpoint: {stats:?}"
    );
    assert_eq!(stats.upstream_connect_errors, 0);
    proxy.stop().await;

    let (_live, plan) = dead_and_live("    retries: {attempts: 0}\n").await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let mut failed = 0;
    for _ in 0..REQUESTS {
        if client.get(HOST, "/", &[]).await.status == 503 {
            failed += 1;
        }
    }
    let stats = proxy.stats.snapshot();
    assert_eq!((stats.retries, stats.upstream_connect_errors), (0, failed));
    vsteer_testkit::stats::assert_split(&[failed, REQUESTS - failed], &[50.0, 50.0]).unwrap();
    proxy.stop().await;
}

const CORS: &str = r#"  - match: [{uri: {prefix: /api}}]
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}, {regex: "https://.*\\.test"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      exposeHeaders: [x-trace]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v2}}]
"#;

/// `corsPolicy` as Envoy's CORS filter: a preflight from an allowed origin is answered by
/// the proxy with the policy's allowances; a request from one reaches the backend and its
/// response carries `Access-Control-Allow-Origin`; another origin, or none, passes
/// untouched (its preflight goes to the backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_and_allowed_origins_marked() {
    let (_backends, proxy, mut client) = reviews_over_h1(CORS).await;
    let preflight = vsteer_testkit::http::request(
        "OPTIONS",
        "/api/items",
        &[
            ("host", HOST),
            ("origin", "https://a.test"),
            ("access-control-request-method", "POST"),
        ],
        vsteer_testkit::http::empty(),
    );
    let reply = client.send(preflight).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "", "answered by the proxy, not a backend");
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://a.test"
    );
    assert_eq!(reply.headers["access-control-allow-methods"], "GET,POST");
    assert_eq!(reply.headers["access-control-allow-headers"], "x-token");
    assert_eq!(reply.headers["access-control-max-age"], "86400");
    assert_eq!(reply.headers["access-control-allow-credentials"], "true");

    let simple = client
        .get(HOST, "/api/items", &[("origin", "https://shop.example")])
        .await;
    assert_eq!((simple.status.as_u16(), simple.backend()), (200, "v1"));
    assert_eq!(
        simple.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(simple.headers["access-control-expose-headers"], "x-trace");

    for origin in [Some("https://evil.example"), None] {
        let mut headers = vec![("host", HOST), ("access-control-request-method", "POST")];
        headers.extend(origin.map(|o| ("origin", o)));
        let request = vsteer_testkit::http::request(
            "OPTIONS",
            "/api/items",
            &headers,
            vsteer_testkit::http::empty(),
        );
        let reply = client.send(request).await.unwrap();
        assert_eq!(reply.backend(), "v1", "{origin:?}: the backend answers");
        assert!(reply.headers.get("access-control-allow-origin").is_none());
    }
    proxy.stop().await;
}

/// Waits (bounded) until `backend` has seen `count` requests; returns what it saw.
async fn seen_at_least(backend: &Backend, count: usize) -> Vec<String> {
    for _ in 0..100 {
        let seen = backend.seen();
        if seen.len() >= count {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    backend.seen()
}

/// `mirror` as Envoy's request mirroring: a copy of each request (its host with `-shadow`)
/// goes to the mirror destination, fire and forget: the client gets the primary's answer
/// whether the mirror answers, holds the copy forever or is dead; `mirrorPercentage` takes
/// that share (chi-square); a request with a body is not copied (counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_get_copies_and_never_delay_the_request() {
    let dead_port = closed_port("127.0.1.252");
    let vs = r#"  - match: [{uri: {prefix: /dead}}]
    mirror: {host: dead.default.svc.cluster.local}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /some}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25}
    route: [{destination: {host: reviews, subset: v1}}]
  - mirror: {host: reviews, subset: v2}
    route: [{destination: {host: reviews, subset: v1}}]
"#;
    let (backends, plan) = {
        let backends = vec![Backend::start("v1").await, Backend::start("v2").await];
        let yaml = service_entry(
            "reviews",
            "127.100.0.1",
            9080,
            "HTTP",
            &[(&backends[0], "v1"), (&backends[1], "v2")],
        ) + &format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dead, namespace: default}}
spec:
  hosts: [dead.default.svc.cluster.local]
  addresses: [127.100.0.9]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.1.252, ports: {{http: {dead_port}}}}}]
---
"
        ) + &destination_rule("reviews", &["v1", "v2"], "")
            + &virtual_service("reviews", vs);
        (backends, plan_from_yaml(&yaml))
    };
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;

    let reply = client.get(HOST, "/all", &[]).await;
    assert_eq!((reply.status.as_u16(), reply.backend()), (200, "v1"));
    let copies = seen_at_least(&backends[1], 1).await;
    assert_eq!(
        copies,
        ["GET reviews.default.svc.cluster.local-shadow:9080 /all"]
    );

    // A mirror that holds its copy, or is dead: the client's answer does not wait. (The
    // primary's own /hold is let through at once.)
    backends[0].release(1);
    let reply = client.get(HOST, "/hold", &[]).await;
    assert_eq!((reply.status.as_u16(), reply.backend()), (200, "v1"));
    seen_at_least(&backends[1], 2).await;
    assert_eq!(backends[1].held(), 1, "the copy is still held");
    let dead = client.get(HOST, "/dead", &[]).await;
    assert_eq!((dead.status.as_u16(), dead.backend()), (200, "v1"));

    // A body is copied whole, once it has streamed to the primary; one larger than the
    // copy's bound (64 KiB) is not.
    let post = |body: String| {
        vsteer_testkit::http::request(
            "POST",
            "/keep",
            &[("host", HOST)],
            vsteer_testkit::http::full(body),
        )
    };
    assert_eq!(client.send(post("data".into())).await.unwrap().status, 200);
    let large = "x".repeat(64 * 1024 + 1);
    assert_eq!(client.send(post(large.clone())).await.unwrap().status, 200);
    assert_eq!(backends[0].kept(), ["data".to_string(), large]);
    eventually("the copy with its body", || backends[1].kept() == ["data"]).await;

    let before = backends[1].seen().len();
    let sent_before = proxy.stats.snapshot().mirrors_sent;
    const REQUESTS: u64 = 800;
    for _ in 0..REQUESTS {
        assert_eq!(client.get(HOST, "/some", &[]).await.status, 200);
    }
    let stats = proxy.stats.snapshot();
    let sent = stats.mirrors_sent - sent_before;
    vsteer_testkit::stats::assert_split(&[sent, REQUESTS - sent], &[25.0, 75.0]).unwrap();
    // Copies run on their own: every one drawn lands.
    let landed = seen_at_least(&backends[1], before + sent as usize).await;
    let some = landed[before..]
        .iter()
        .filter(|s| s.ends_with(" /some"))
        .count();
    assert_eq!(some as u64, sent);
    assert_eq!(stats.mirrors_skipped, 1);
    assert!(stats.mirrors_failed >= 1, "{stats:?}");
    backends[1].release(1);
    proxy.stop().await;
}

/// Retries after the request left (sent again as it was, on another endpoint): Istio's
/// default policy retries a 503, `5xx` a 500-class answer, a per-try timeout gives up on an
/// endpoint that holds the request; `attempts: 0` is not retried; a request's body is sent
/// again from its copy, one larger than the copy's bound is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_answers_are_retried_on_another_endpoint() {
    let vs = "  - match: [{headers: {x-policy: {exact: off}}}]
    retries: {attempts: 0}
    route: [{destination: {host: reviews}}]
  - match: [{headers: {x-policy: {exact: per-try}}}]
    retries: {attempts: 1, perTryTimeout: 200ms, retryOn: reset}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
";
    let (backends, plan) = {
        let backends = vec![Backend::start("v1").await, Backend::start("v2").await];
        let yaml = service_entry(
            "reviews",
            "127.100.0.1",
            9080,
            "HTTP",
            &[(&backends[0], "v1"), (&backends[1], "v1")],
        ) + &destination_rule("reviews", &["v1"], "").replace(
            "name: v1, labels: {version: v1}",
            "name: both, labels: {version: v1}",
        ) + &virtual_service("reviews", vs);
        (backends, plan_from_yaml(&yaml))
    };
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    const REQUESTS: u64 = 200;
    for _ in 0..REQUESTS {
        let reply = client.get(HOST, "/fail-on/v1", &[]).await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, "v2"));
    }
    let retried = proxy.stats.snapshot().retries;
    assert!(retried > 0, "v1 was never picked");
    vsteer_testkit::stats::assert_split(&[retried, REQUESTS - retried], &[50.0, 50.0]).unwrap();

    let mut failed = 0;
    for _ in 0..REQUESTS {
        if client
            .get(HOST, "/fail-on/v1", &[("x-policy", "off")])
            .await
            .status
            == 503
        {
            failed += 1;
        }
    }
    // The `off` requests were not retried.
    assert_eq!(proxy.stats.snapshot().retries, retried);
    assert!(failed > 0 && failed < REQUESTS, "{failed}");

    // With a body: every one reaches v2 with its body, v1's 503 retried from the copy.
    let post = |path: &str, body: String| {
        vsteer_testkit::http::request(
            "POST",
            path,
            &[("host", HOST)],
            vsteer_testkit::http::full(body),
        )
    };
    for i in 0..50 {
        let reply = client
            .send(post("/keep/fail-on/v1", format!("body {i}")))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}");
    }
    let bodies: Vec<String> = (0..50).map(|i| format!("body {i}")).collect();
    assert_eq!(backends[1].kept(), bodies);
    let body_retries = proxy.stats.snapshot().retries - retried;
    assert!(body_retries > 0, "v1 was never picked");
    // Larger than the copy's bound: sent once, v1's 503 reaches the client.
    let large = "y".repeat(64 * 1024 + 1);
    let mut answered_503 = 0;
    for _ in 0..20 {
        let status = client
            .send(post("/keep/fail-on/v1", large.clone()))
            .await
            .unwrap()
            .status;
        answered_503 += u32::from(status == 503);
    }
    assert!(answered_503 > 0, "v1 was never picked for a large body");
    assert_eq!(proxy.stats.snapshot().retries - retried, body_retries);

    // The per-try timeout: v1 holds, the retry goes to v2.
    for _ in 0..20 {
        let reply = client
            .get(HOST, "/hold-on/v1", &[("x-policy", "per-try")])
            .await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, "v2"));
    }
    backends[0].release(20);
    proxy.stop().await;
}

/// `connectionPool` as Envoy's circuit breakers: with one connection and one pending request
/// allowed, of 20 concurrent requests one is served, one waits for that connection, and the
/// other 18 are answered 503 `x-envoy-overloaded` at once; the endpoint never sees a second
/// connection. Then `http2MaxRequests` bounds requests in flight on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_limits_overflow_at_once_and_hold_one_connection() {
    let to_v1 = "  - route: [{destination: {host: reviews, subset: v1}}]\n";
    let policy = "    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
";
    let (backends, plan) = reviews(to_v1, policy).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move { H1::connect(addr).await.get(HOST, "/hold", &[]).await })
        })
        .collect();
    eventually("18 overflows", || proxy.stats.snapshot().overflows == 18).await;
    eventually("one request at the endpoint", || backends[0].held() == 1).await;
    // The first, then the pending one on the same connection.
    backends[0].release(2);
    let mut statuses = BTreeMap::new();
    for client in clients {
        let reply = client.await.unwrap();
        if reply.status == 503 {
            let overloaded = reply.headers.get("x-envoy-overloaded");
            assert_eq!(overloaded.and_then(|v| v.to_str().ok()), Some("true"));
            assert!(reply.body.contains("reset reason: overflow"), "{reply:?}");
        }
        *statuses.entry(reply.status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 2), (503, 18)]));
    assert_eq!(backends[0].connections(), 1);
    assert_eq!(backends[0].peak_connections(), 1);
    proxy.stop().await;

    let policy = "    connectionPool:
      http: {http2MaxRequests: 3}
";
    let (backends, plan) = reviews(to_v1, policy).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move { H1::connect(addr).await.get(HOST, "/hold", &[]).await })
        })
        .collect();
    eventually("2 overflows", || proxy.stats.snapshot().overflows == 2).await;
    eventually("3 at the endpoint", || backends[0].held() == 3).await;
    backends[0].release(3);
    let served = futures_join(clients).await;
    assert_eq!(served.iter().filter(|s| **s == 200).count(), 3);
    // Three connections at once: no connection limit was set.
    assert_eq!(backends[0].peak_connections(), 3);
    proxy.stop().await;
}

/// With fewer connections allowed than endpoints, an endpoint without any connection still
/// gets one (as Envoy's pools do): idle connections to the others never leave its requests
/// waiting, and round robin over three endpoints serves every request at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_a_connection_gets_one_beyond_the_limit() {
    let to_all = "  - route: [{destination: {host: reviews}}]\n";
    let policy = "    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
";
    let (backends, plan) = reviews(to_all, policy).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let started = std::time::Instant::now();
    let mut seen = BTreeMap::new();
    for _ in 0..12 {
        let reply = client.get(HOST, "/x", &[]).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        *seen.entry(reply.backend().to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(proxy.stats.snapshot().overflows, 0);
    // Nothing waited for the connect timeout (10 s).
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for backend in &backends {
        assert_eq!(backend.peak_connections(), 1, "{}", backend.name);
    }
    proxy.stop().await;
}

/// A limited cluster's pools go with the last table that holds them, and close their idle
/// connections (a connection must not keep its own pool alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_clusters_idle_connections_close_when_its_tables_go() {
    let to_v1 = "  - route: [{destination: {host: reviews, subset: v1}}]\n";
    let limited = "    connectionPool: {tcp: {maxConnections: 4}}\n";
    let (backends, plan) = reviews(to_v1, limited).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    assert_eq!(client.get(HOST, "/x", &[]).await.status, 200);
    assert_eq!(backends[0].open_connections(), 1, "one idle connection");
    // Other limits: another cluster state, and the old one is held by no table.
    let other = "    connectionPool: {tcp: {maxConnections: 5}}\n";
    let key = ServiceKey::new("127.100.0.1".parse().unwrap(), 9080, Protocol::Tcp);
    proxy
        .tables
        .update(&reviews_plan(&backends, to_v1, other), &[key]);
    assert_eq!(client.get(HOST, "/x", &[]).await.status, 200);
    eventually("the old pool's connection closed", || {
        backends[0].open_connections() == 1
    })
    .await;
    assert_eq!(backends[0].connections(), 2);
    proxy.stop().await;
}

/// `maxRequestsPerConnection`: an upstream connection is closed after so many requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_opens_a_new_connection_after_the_limit() {
    let to_v1 = "  - route: [{destination: {host: reviews, subset: v1}}]\n";
    let policy = "    connectionPool:
      http: {maxRequestsPerConnection: 2}
";
    let (backends, plan) = reviews(to_v1, policy).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    for _ in 0..6 {
        assert_eq!(client.get(HOST, "/x", &[]).await.status, 200);
    }
    // At most two requests each (a connection may also be replaced before its limit, when
    // the next request comes before it is back in the pool).
    assert!(
        backends[0].connections() >= 3,
        "{}",
        backends[0].connections()
    );
    proxy.stop().await;
}

async fn futures_join(
    clients: Vec<tokio::task::JoinHandle<vsteer_testkit::http::Reply>>,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for client in clients {
        statuses.push(client.await.unwrap().status.as_u16());
    }
    statuses
}

/// Istio's `outlierDetection`: an endpoint that answers 5xx `consecutive5xxErrors` times
/// in a row gets no more requests until `baseEjectionTime` has passed (ended at an
/// `interval` tick); a second failing endpoint stays in while `maxEjectionPercent` (34% of
/// three: one) is out already; the ejection is published, for the kernel and the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_endpoint_until_its_time_has_passed() {
    let (backends, plan) = three_in_one_subset_with(
        "      outlierDetection: {consecutive5xxErrors: 3, interval: 200ms, baseEjectionTime: 5s, maxEjectionPercent: 34}\n",
        "    retries: {attempts: 0}\n",
    )
    .await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let ejections = proxy.tables.ejections();
    let a = backends[0].addr;
    let mut client = H1::connect(proxy.addr).await;
    let mut answers = Vec::new();
    for _ in 0..60 {
        let reply = client.get(HOST, "/fail-on/a", &[]).await;
        answers.push((reply.status.as_u16(), reply.backend().to_string()));
    }
    let failed = answers.iter().filter(|(s, _)| *s == 503).count();
    assert_eq!(failed, 3, "a is out after its third 503: {answers:?}");
    let last_failure = answers.iter().rposition(|(s, _)| *s == 503).unwrap();
    assert!(
        answers[last_failure + 1..].iter().all(|(_, b)| b != "a"),
        "{answers:?}"
    );
    let listed = ejections.list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].address, listed[0].reason, listed[0].failures),
        (a, vsteer_proxy::EjectionReason::Consecutive5xx, 3)
    );

    // b fails as well, but one of three is all that 34% lets out: b stays in and keeps
    // failing (P(b drawn fewer than 4 times of 60) < 1e-13).
    let mut b_failures = 0;
    for _ in 0..60 {
        if client.get(HOST, "/fail-on/b", &[]).await.status == 503 {
            b_failures += 1;
        }
    }
    assert!(b_failures > 3, "b was ejected too: {b_failures} failures");
    assert_eq!(ejections.addresses().into_iter().collect::<Vec<_>>(), [a]);
    // All of the above within a's 5 s, or it proves nothing.
    assert!(
        ejections.list()[0].until > std::time::SystemTime::now(),
        "the requests took longer than the ejection"
    );

    // After 5 s (and the tick after it) a is back: P(a drawn none of 60) < 1e-10.
    eventually("a's ejection ends", || ejections.list().is_empty()).await;
    let mut a_served = 0;
    for _ in 0..60 {
        if client.get(HOST, "/", &[]).await.backend() == "a" {
            a_served += 1;
        }
    }
    assert!(a_served > 0, "a got no request after its ejection");
    proxy.stop().await;
}

/// As in Envoy's pools, a pending request waits for a connection as long as the route's
/// timeout allows, not just a connect timeout: with `connectTimeout: 100ms` the request
/// pending behind a held one is served when that one ends, 500 ms later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_waits_past_the_connect_timeout() {
    let to_v1 = "  - route: [{destination: {host: reviews, subset: v1}}]\n";
    let policy = "    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 100ms}
      http: {http1MaxPendingRequests: 1}
";
    let (backends, plan) = reviews(to_v1, policy).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let addr = proxy.addr;
    let held = tokio::spawn(async move { H1::connect(addr).await.get(HOST, "/hold", &[]).await });
    eventually("one request at the endpoint", || backends[0].held() == 1).await;
    let pending = tokio::spawn(async move { H1::connect(addr).await.get(HOST, "/", &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "the pending request gave up");
    backends[0].release(1);
    assert_eq!(held.await.unwrap().status, 200);
    let reply = pending.await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(proxy.stats.snapshot().overflows, 0);
    proxy.stop().await;
}

/// Istio's locality failover (on for a cluster with outlier detection, from the node's
/// locality): requests go to the endpoints of the node's own zone while they are healthy;
/// when that one is ejected, to the next level (the same region), never to another region
/// while that level has a healthy endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_failover_moves_to_the_next_level_when_the_local_one_is_ejected() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let mut yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "HTTP",
        &[
            (&backends[0], "x"),
            (&backends[1], "x"),
            (&backends[2], "x"),
        ],
    );
    for (backend, locality) in
        backends
            .iter()
            .zip(["us-west/zone1", "us-west/zone2", "us-east/zone1"])
    {
        let port = format!("web: {}\n", backend.addr.port());
        yaml = yaml.replace(&port, &format!("{port}    locality: {locality}\n"));
    }
    yaml += &destination_rule(
        "reviews",
        &["x"],
        "    outlierDetection: {consecutive5xxErrors: 3, interval: 200ms, baseEjectionTime: 30s, maxEjectionPercent: 100}\n",
    );
    yaml += &virtual_service(
        "reviews",
        "  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n",
    );
    let loaded = vsteer_model::parse::parse_str("test.yaml", &yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let node = vsteer_compiler::locality::Locality::parse("us-west/zone1/rack1").unwrap();
    let compiled = vsteer_compiler::compile_at(
        &loaded.resources,
        &vsteer_plan::Plan::default(),
        Some(&node),
    );
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let proxy = Harness::start(&compiled.plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        *served
            .entry(client.get(HOST, "/", &[]).await.backend().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        served,
        BTreeMap::from([("a".to_string(), 30)]),
        "level 0 takes all"
    );
    // a fails three times and is ejected: level 1 (b) takes everything, c nothing.
    let mut answers = Vec::new();
    for _ in 0..30 {
        let reply = client.get(HOST, "/fail-on/a", &[]).await;
        answers.push((reply.status.as_u16(), reply.backend().to_string()));
    }
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 503).count(),
        3,
        "{answers:?}"
    );
    assert!(
        answers[3..].iter().all(|(s, b)| *s == 200 && b == "b"),
        "{answers:?}"
    );
    proxy.stop().await;
}
