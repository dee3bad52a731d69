//! The L7 path end to end: the real agent (its kernel programs and its proxy) in a "node"
//! namespace, clients in a "pod" namespace of their own joined by a veth pair, dialing VIPs
//! as an application would. The kernel redirects the connects of proxied services to the
//! proxy on the node's veth address, the proxy recovers each connection's original
//! destination and serves the service's Istio HTTP rules per request.
//!
//! Client sockets are made inside the pod's namespace and the agent's cgroup (by a
//! short-lived child) and used from the test's threads: cgroup hooks judge a socket by the
//! cgroup it was created in.
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Frame;
use support::assert_seed_rule_alternates;
use support::l7_stage::{L7Stage, PROXY, TIMEOUT, metric, service, virtual_service};
use vsteer_testkit::http::{Body, H1, Reply, request};
use vsteer_testkit::{kernel_tests_enabled, stats};

const REVIEWS: &str = "127.100.0.1:9080";
const RATINGS: &str = "127.100.0.2:9080";
const GRPC: &str = "127.100.0.4:50051";
const WEB: &str = "127.100.0.5:80";
const FRONT: &str = "127.100.0.6:80";
const MIDDLE: &str = "127.100.0.7:80";
const POOLED: &str = "127.100.0.8:80";
const GUARDED: &str = "127.100.0.9:80";
const GUARDED_TCP: &str = "127.100.0.10:80";
const SECURE: &str = "127.100.0.11:443";
/// The TLS service whose endpoint only a tls rule of SECURE reaches.
const SECURE_POOL: &str = "127.100.0.13:443";
const SNIFFED: &str = "127.100.0.12:8000";
/// The endpoints of both guarded services.
const GUARDED_ENDPOINTS: [(&str, &str); 3] = [
    ("127.0.10.1:80", "v1"),
    ("127.0.10.2:80", "v2"),
    ("127.0.10.3:80", "v3"),
];

/// Every backend: (name, address).
const BACKENDS: [(&str, &str); 18] = [
    ("reviews-v1", "127.0.1.1:9080"),
    ("reviews-v2", "127.0.1.2:9080"),
    ("reviews-v3", "127.0.1.3:9080"),
    ("ratings-v1", "127.0.2.1:9080"),
    ("ratings-v2", "127.0.2.2:9080"),
    ("grpc-v1", "127.0.4.1:50051"),
    ("grpc-v2", "127.0.4.2:50051"),
    ("web-v1", "127.0.5.1:8080"),
    ("web-v2", "127.0.5.2:8080"),
    // The middle service's own backends: its L4 fallback, and the one only its proxy rule
    // reaches.
    ("middle-l4", "127.0.7.1:80"),
    ("middle-l7", "127.0.7.2:80"),
    // The one endpoint of a service with connectionPool limits.
    ("pooled-v1", "127.0.8.1:80"),
    // The endpoints of an HTTP service with outlier detection, and of a TCP service (the
    // kernel's) that shares them.
    ("guarded-v1", "127.0.10.1:80"),
    ("guarded-v2", "127.0.10.2:80"),
    ("guarded-v3", "127.0.10.3:80"),
    // The HTTP endpoints of a port of undeclared protocol (its tcp route's is plain TCP).
    ("sniffed-v1", "127.0.12.1:8000"),
    ("sniffed-v2", "127.0.12.2:8000"),
    ("unused", "127.0.9.1:80"),
];

/// The seed's reviews, a weighted ratings canary behind a header rule, a gRPC service, a
/// web service with every other action, and a front service whose only endpoint is the VIP
/// of another proxied service.
fn config() -> Vec<(&'static str, String)> {
    let http = "name: http, protocol: HTTP";
    vec![
        (
            "reviews.yaml",
            service(
                "reviews",
                REVIEWS,
                http,
                &[
                    ("127.0.1.1:9080", "v1"),
                    ("127.0.1.2:9080", "v2"),
                    ("127.0.1.3:9080", "v3"),
                ],
            ) + &virtual_service(
                "reviews",
                "  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v3}}]
",
            ),
        ),
        (
            "ratings.yaml",
            service(
                "ratings",
                RATINGS,
                http,
                &[("127.0.2.1:9080", "v1"), ("127.0.2.2:9080", "v2")],
            ) + &virtual_service(
                "ratings",
                "  - match: [{headers: {x-canary: {exact: always}}}]
    route: [{destination: {host: ratings, subset: v2}}]
  - route:
    - {destination: {host: ratings, subset: v1}, weight: 90}
    - {destination: {host: ratings, subset: v2}, weight: 10}
",
            ),
        ),
        (
            "grpc.yaml",
            service(
                "grpc",
                GRPC,
                "name: grpc, protocol: GRPC",
                &[("127.0.4.1:50051", "v1"), ("127.0.4.2:50051", "v2")],
            ) + &virtual_service(
                "grpc",
                "  - match: [{headers: {x-route: {exact: v2}}}]
    route: [{destination: {host: grpc, subset: v2}}]
  - route: [{destination: {host: grpc, subset: v1}}]
",
            ),
        ),
        (
            "web.yaml",
            service(
                "web",
                WEB,
                http,
                &[("127.0.5.1:8080", "v1"), ("127.0.5.2:8080", "v2")],
            ) + &virtual_service(
                "web",
                "  - match: [{headers: {x-timeout: {exact: short}}}]
    timeout: 300ms
    route: [{destination: {host: web, subset: v1}}]
  - match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - match: [{uri: {prefix: /cors}}]
    corsPolicy: {allowOrigins: [{exact: \"https://pod.example\"}], allowMethods: [GET]}
    route: [{destination: {host: web, subset: v1}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 301}
  - match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: healthy}}
  - match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /v2/}
    headers:
      request: {set: {x-added: by-rule}, remove: [x-secret]}
      response: {set: {x-served-by: vsteer}}
    route: [{destination: {host: web, subset: v2}}]
  - match: [{uri: {prefix: /app}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: team
    match: [{uri: {prefix: /team}}]
    headers: {response: {set: {x-root-rule: team}}}
    delegate: {name: web-team}
",
            ),
        ),
        (
            // Istio's circuit-breaking task: no VirtualService, a DestinationRule's limits.
            "pooled.yaml",
            service("pooled", POOLED, http, &[("127.0.8.1:80", "v1")])
                + "  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
",
        ),
        (
            // Istio's outlier detection, made quick; no retries, so each 503 is seen.
            "guarded.yaml",
            service("guarded", GUARDED, http, &GUARDED_ENDPOINTS)
                + "  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 500ms, baseEjectionTime: 10s, maxEjectionPercent: 34}
"
                + &virtual_service(
                    "guarded",
                    "  - route: [{destination: {host: guarded}}]
    retries: {attempts: 0}
",
                ),
        ),
        (
            // The same endpoints on a TCP port: the kernel's.
            "guarded-tcp.yaml",
            service(
                "guarded-tcp",
                GUARDED_TCP,
                "name: tcp, protocol: TCP",
                &GUARDED_ENDPOINTS,
            ),
        ),
        (
            // Istio's TLS routing: by SNI, never terminated; the rest to the service's own
            // endpoint (its tcp rule never applies on a TLS port).
            "secure.yaml",
            service(
                "secure",
                SECURE,
                "name: tls, protocol: TLS",
                &[("127.0.11.2:443", "v2")],
            ) + "---\n"
                + &service(
                "secure-pool",
                SECURE_POOL,
                "name: tls, protocol: TLS",
                &[("127.0.11.1:443", "v1")],
            ) + "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure]
  tls:
  - match: [{sniHosts: [secure.default.svc.cluster.local]}]
    route: [{destination: {host: secure-pool}}]
  tcp:
  - route: [{destination: {host: secure-pool}}]
",
        ),
        (
            // No protocol declared: Istio sniffs it, http rules for HTTP, tcp for the rest.
            "sniffed.yaml",
            service(
                "sniffed",
                SNIFFED,
                "name: web",
                &[
                    ("127.0.12.1:8000", "v1"),
                    ("127.0.12.2:8000", "v2"),
                    ("127.0.12.3:8000", "v3"),
                ],
            ) + &virtual_service(
                "sniffed",
                "  - match: [{headers: {x-v: {exact: '2'}}}]
    route: [{destination: {host: sniffed, subset: v2}}]
  - route: [{destination: {host: sniffed, subset: v1}}]
  tcp:
  - route: [{destination: {host: sniffed, subset: v3}}]
",
            ),
        ),
        (
            // A delegate (no hosts): its rules stand in web's `team` rule.
            "web-team.yaml",
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-team}
spec:
  http:
  - match: [{uri: {prefix: /team/v2}}]
    route: [{destination: {host: web, subset: v2}}]
  - match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: web, subset: v2}}]
  - route: [{destination: {host: web, subset: v1}}]
"
            .to_string(),
        ),
        (
            "front.yaml",
            service("front", FRONT, http, &[(MIDDLE, "v1")])
                + &virtual_service(
                    "front",
                    "  - match: [{headers: {x-via: {exact: front}}}]
    route: [{destination: {host: front}}]
",
                ),
        ),
        (
            "middle.yaml",
            service(
                "middle",
                MIDDLE,
                http,
                &[("127.0.7.1:80", "l4"), ("127.0.7.2:80", "l7")],
            ) + &virtual_service(
                "middle",
                "  - match: [{headers: {x-via: {exact: front}}}]
    route: [{destination: {host: middle, subset: l7}}]
  - route: [{destination: {host: middle, subset: l4}}]
",
            ),
        ),
    ]
}

/// The stage on [`config`], with its seven proxied services.
fn stage() -> L7Stage {
    let stage = L7Stage::new(&BACKENDS, &config());
    assert!(
        stage.agent.ready_line().contains("proxied=10"),
        "{}",
        stage.agent.ready_line()
    );
    stage
}

async fn get(h1: &mut H1, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    h1.get(host, path, headers).await
}

#[test]
fn the_seed_rule_over_http1_keep_alive_alternates_per_request() {
    if !kernel_tests_enabled("the_seed_rule_over_http1_keep_alive_alternates_per_request") {
        return;
    }
    let stage = stage();
    let mut h1 = stage.h1(REVIEWS);
    stage.block(assert_seed_rule_alternates(&mut h1, 40, TIMEOUT));
    // Through the proxy, the backend saw the client's own request.
    let reply = stage.block(get(&mut h1, "reviews:9080", "/x?y=1", &[]));
    assert_eq!(reply.seen("path"), Some("/x?y=1"));
    assert_eq!(reply.seen("authority"), Some("reviews:9080"));
}

#[test]
fn the_seed_rule_over_http2_prior_knowledge_routes_each_stream() {
    if !kernel_tests_enabled("the_seed_rule_over_http2_prior_knowledge_routes_each_stream") {
        return;
    }
    let stage = stage();
    let h2 = stage.h2(REVIEWS);
    let replies: Vec<(bool, String)> = stage.block(async {
        let mut streams = Vec::new();
        for i in 0..40 {
            let mut h2 = h2.clone();
            let jason = i % 3 == 0;
            streams.push(tokio::spawn(async move {
                let headers: &[(&str, &str)] = if jason { &[("end-user", "jason")] } else { &[] };
                let reply = h2.get("reviews:9080", "/reviews/0", headers).await;
                assert_eq!(reply.status, 200, "{reply:?}");
                (jason, reply.backend().to_string())
            }));
        }
        let mut replies = Vec::new();
        for stream in streams {
            replies.push(stream.await.expect("stream task"));
        }
        replies
    });
    for (jason, backend) in &replies {
        let expected = if *jason { "reviews-v2" } else { "reviews-v3" };
        assert_eq!(backend, expected, "{replies:?}");
    }
}

#[test]
fn two_hundred_concurrent_clients_get_their_own_service_and_leave_no_entry() {
    if !kernel_tests_enabled(
        "two_hundred_concurrent_clients_get_their_own_service_and_leave_no_entry",
    ) {
        return;
    }
    let stage = stage();
    let reviews = stage.connect(REVIEWS, 100);
    let web = stage.connect(WEB, 100);
    // All 200 connections are open at once, each with its own original destination.
    let entries = stage.original_entries();
    assert_eq!(
        entries, 200,
        "original-destination entries while 200 are open"
    );
    let answers: Vec<(bool, String)> = stage.block(async {
        let mut tasks = Vec::new();
        for (is_reviews, stream) in reviews
            .into_iter()
            .map(|s| (true, s))
            .chain(web.into_iter().map(|s| (false, s)))
        {
            tasks.push(tokio::spawn(async move {
                let mut h1 = H1::over(stream).await;
                let (host, path) = if is_reviews {
                    ("reviews:9080", "/reviews/1")
                } else {
                    ("web", "/app/1")
                };
                let reply = h1.get(host, path, &[]).await;
                assert_eq!(reply.status, 200, "{reply:?}");
                (is_reviews, reply.backend().to_string())
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("client task"));
        }
        answers
    });
    for (is_reviews, backend) in &answers {
        let expected = if *is_reviews { "reviews-v3" } else { "web-v1" };
        assert_eq!(backend, expected, "a client got another service's answer");
    }
    // The clients are gone (their connections closed with their tasks): so are the entries.
    let deadline = Instant::now() + TIMEOUT;
    let mut left = stage.original_entries();
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = stage.original_entries();
    }
    assert_eq!(
        left, 0,
        "original-destination entries left after every client closed"
    );
}

#[test]
fn a_90_10_route_splits_requests_on_keep_alive_connections() {
    if !kernel_tests_enabled("a_90_10_route_splits_requests_on_keep_alive_connections") {
        return;
    }
    const CONNECTIONS: usize = 8;
    const PER_CONNECTION: usize = 1_500;
    let stage = stage();
    let streams = stage.connect(RATINGS, CONNECTIONS);
    let counts: BTreeMap<String, u64> = stage
        .l7
        .runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), async {
                let mut tasks = Vec::new();
                for stream in streams {
                    tasks.push(tokio::spawn(async move {
                        let mut h1 = H1::over(stream).await;
                        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                        for _ in 0..PER_CONNECTION {
                            let reply = h1.get("ratings:9080", "/", &[]).await;
                            assert_eq!(reply.status, 200, "{reply:?}");
                            *counts.entry(reply.backend().to_string()).or_default() += 1;
                        }
                        counts
                    }));
                }
                let mut total: BTreeMap<String, u64> = BTreeMap::new();
                for task in tasks {
                    for (name, n) in task.await.expect("client task") {
                        *total.entry(name).or_default() += n;
                    }
                }
                total
            })
            .await
        })
        .expect("12,000 requests within two minutes");
    let observed = [
        counts.get("ratings-v1").copied().unwrap_or(0),
        counts.get("ratings-v2").copied().unwrap_or(0),
    ];
    assert_eq!(
        observed.iter().sum::<u64>(),
        (CONNECTIONS * PER_CONNECTION) as u64,
        "{counts:?}"
    );
    stats::assert_split(&observed, &[90.0, 10.0]).unwrap();
    // Each connection is split on its own: per request, not per connection.
}

#[test]
fn a_grpc_call_is_routed_by_header_and_its_trailers_arrive() {
    if !kernel_tests_enabled("a_grpc_call_is_routed_by_header_and_its_trailers_arrive") {
        return;
    }
    let stage = stage();
    let h2 = stage.h2(GRPC);
    for (route, expected) in [(Some("v2"), "grpc-v2"), (None, "grpc-v1")] {
        let mut h2 = h2.clone();
        let (message, trailers) =
            stage.block(async move {
                let mut client_trailers = HeaderMap::new();
                client_trailers.insert("x-client", "sent".parse().unwrap());
                // One length-prefixed gRPC message, then the client's trailers.
                let frames: Vec<
                    Result<Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>,
                > = vec![
                    Ok(Frame::data(bytes::Bytes::from_static(b"\0\0\0\0\x05hello"))),
                    Ok(Frame::trailers(client_trailers)),
                ];
                let body: Body =
                    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
                let mut headers = vec![("content-type", "application/grpc"), ("te", "trailers")];
                if let Some(route) = route {
                    headers.push(("x-route", route));
                }
                let reply = h2
                    .send(request(
                        "POST",
                        "http://grpc:50051/test.Echo/Say",
                        &headers,
                        body,
                    ))
                    .await
                    .expect("a gRPC response");
                assert_eq!(reply.status, 200, "{reply:?}");
                (reply.bytes, reply.trailers.expect("trailers"))
            });
        assert_eq!(&message[..], b"\0\0\0\0\x05hello");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-backend"], expected);
        // The client's trailers reached the backend, over HTTP/2 to the backend too.
        assert_eq!(trailers["x-client-echo"], "sent");
        assert_eq!(trailers["x-version"], "HTTP/2.0");
    }
}

#[test]
fn a_websocket_upgrade_passes_through_the_proxy() {
    if !kernel_tests_enabled("a_websocket_upgrade_passes_through_the_proxy") {
        return;
    }
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let stage = stage();
    let stream = stage.connect(REVIEWS, 1).pop().unwrap();
    let echoed = stage.block(async move {
        let mut req = "ws://reviews:9080/chat".into_client_request().unwrap();
        req.headers_mut()
            .insert("end-user", "jason".parse().unwrap());
        let (mut ws, response) = tokio_tungstenite::client_async(req, stream)
            .await
            .expect("WebSocket handshake through the proxy");
        assert_eq!(response.status(), 101);
        let mut echoed = Vec::new();
        for text in ["one", "two"] {
            ws.send(Message::text(text)).await.expect("send");
            let reply = ws.next().await.expect("a reply").expect("a message");
            echoed.push(reply.into_text().expect("text").to_string());
        }
        let _ = ws.close(None).await;
        echoed
    });
    assert_eq!(echoed, ["reviews-v2: one", "reviews-v2: two"]);
}

/// Istio's circuit breaking through the real hook and proxy: one connection and one
/// pending request allowed, 20 concurrent requests from the pod: 2 served (one after the
/// other on the one connection), 18 answered 503 `x-envoy-overloaded` at once, and the
/// endpoint never sees a second connection.
#[test]
fn connection_pool_limits_overflow_with_503_and_hold_one_upstream_connection() {
    if !kernel_tests_enabled(
        "connection_pool_limits_overflow_with_503_and_hold_one_upstream_connection",
    ) {
        return;
    }
    let stage = stage();
    let backend = stage
        .l7
        .backends
        .iter()
        .find(|b| b.name == "pooled-v1")
        .expect("the pooled backend");
    let streams = stage.connect(POOLED, 20);
    let replies = stage.block(async {
        let clients: Vec<_> = streams
            .into_iter()
            .map(|stream| {
                tokio::spawn(
                    async move { H1::over(stream).await.get("pooled", "/hold", &[]).await },
                )
            })
            .collect();
        // Bounded by the stage's timeout: 18 answered at once, one at the endpoint.
        while clients.iter().filter(|c| c.is_finished()).count() < 18 || backend.held() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(clients.iter().filter(|c| c.is_finished()).count(), 18);
        backend.release(2);
        let mut replies = Vec::new();
        for client in clients {
            replies.push(client.await.expect("a client task"));
        }
        replies
    });
    let overflowed: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(overflowed.len(), 18, "{replies:?}");
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 2);
    for reply in overflowed {
        assert_eq!(reply.headers["x-envoy-overloaded"], "true");
    }
    assert_eq!(backend.connections(), 1);
    assert_eq!(backend.peak_connections(), 1);
}

/// Istio's VirtualService chaining through the real hook and proxy: the delegate's rules
/// serve within the root rule's match, inherit its fields, and one outside it is dropped.
#[test]
fn a_delegate_virtual_services_rules_serve_within_the_root_rule() {
    if !kernel_tests_enabled("a_delegate_virtual_services_rules_serve_within_the_root_rule") {
        return;
    }
    let stage = stage();
    let mut h1 = stage.h1(WEB);
    let (v2, v1, elsewhere) = stage.block(async {
        let v2 = get(&mut h1, "web", "/team/v2/page", &[]).await;
        let v1 = get(&mut h1, "web", "/team/other", &[]).await;
        let elsewhere = get(&mut h1, "web", "/elsewhere", &[]).await;
        (v2, v1, elsewhere)
    });
    assert_eq!(v2.status, 200, "{v2:?}");
    assert_eq!(v2.backend(), "web-v2");
    assert_eq!(v1.status, 200, "{v1:?}");
    assert_eq!(v1.backend(), "web-v1");
    // The root rule's response headers, which the delegate's rules leave unset.
    assert_eq!(v2.headers["x-root-rule"], "team");
    assert_eq!(v1.headers["x-root-rule"], "team");
    // `/elsewhere` is outside the root rule's `/team`: that delegate rule is dropped, and no
    // other rule of web matches it.
    assert_eq!(elsewhere.status, 404, "{elsewhere:?}");
}

#[test]
fn redirect_rewrite_headers_direct_response_and_404() {
    if !kernel_tests_enabled("redirect_rewrite_headers_direct_response_and_404") {
        return;
    }
    let stage = stage();
    let mut h1 = stage.h1(WEB);
    let (redirect, direct, rewritten, missing) = stage.block(async {
        let redirect = get(&mut h1, "web", "/old/page", &[]).await;
        let direct = get(&mut h1, "web", "/health", &[]).await;
        let rewritten = get(
            &mut h1,
            "web",
            "/api/items?id=7",
            &[("x-secret", "s3cr3t"), ("x-kept", "yes")],
        )
        .await;
        let missing = get(&mut h1, "web", "/nowhere", &[]).await;
        (redirect, direct, rewritten, missing)
    });
    assert_eq!(redirect.status, 301, "{redirect:?}");
    assert_eq!(redirect.headers["location"], "http://web/new");
    assert_eq!(direct.status, 200);
    assert_eq!(direct.body, "healthy");
    assert_eq!(rewritten.status, 200, "{rewritten:?}");
    assert_eq!(rewritten.backend(), "web-v2");
    assert_eq!(rewritten.seen("path"), Some("/v2/items?id=7"));
    assert_eq!(rewritten.seen_header("x-added"), ["by-rule"]);
    assert_eq!(rewritten.seen_header("x-kept"), ["yes"]);
    assert!(
        rewritten.seen_header("x-secret").is_empty(),
        "{rewritten:?}"
    );
    assert_eq!(rewritten.headers["x-served-by"], "vsteer");
    assert_eq!(missing.status, 404, "no rule matches: {missing:?}");
    // All of it on one keep-alive connection, and the connection still serves.
    let again = stage.block(get(&mut h1, "web", "/app/x", &[]));
    assert_eq!(again.backend(), "web-v1");
}

/// The resilience features through the real hook and proxy: an injected abort, a route
/// timeout on a backend that holds the request, and a CORS preflight answered by the proxy.
#[test]
fn faults_timeouts_and_cors_through_the_real_hook() {
    if !kernel_tests_enabled("faults_timeouts_and_cors_through_the_real_hook") {
        return;
    }
    let stage = stage();
    let mut h1 = stage.h1(WEB);
    let (fault, timeout, preflight) = stage.block(async {
        let fault = get(&mut h1, "web", "/fault", &[]).await;
        let timeout = get(&mut h1, "web", "/hold", &[("x-timeout", "short")]).await;
        let preflight = h1
            .send(request(
                "OPTIONS",
                "/cors/x",
                &[
                    ("host", "web"),
                    ("origin", "https://pod.example"),
                    ("access-control-request-method", "GET"),
                ],
                vsteer_testkit::http::empty(),
            ))
            .await
            .expect("a preflight reply");
        (fault, timeout, preflight)
    });
    assert_eq!(
        (fault.status.as_u16(), fault.body.as_str()),
        (503, "fault filter abort")
    );
    assert_eq!(
        (timeout.status.as_u16(), timeout.body.as_str()),
        (504, "upstream request timeout")
    );
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://pod.example"
    );
    assert_eq!(preflight.headers["access-control-allow-methods"], "GET");
}

#[test]
fn the_proxys_upstream_connect_to_another_vip_is_not_redirected() {
    if !kernel_tests_enabled("the_proxys_upstream_connect_to_another_vip_is_not_redirected") {
        return;
    }
    let stage = stage();
    // The pod's request to middle itself with the header: its proxy rule applies.
    let mut middle = stage.h1(MIDDLE);
    let direct = stage.block(get(&mut middle, "middle", "/", &[("x-via", "front")]));
    assert_eq!(direct.backend(), "middle-l7");
    // Via front, whose endpoint is middle's VIP: the proxy's own connect to that VIP carries
    // its mark, so the kernel steers it on middle's L4 route instead of back to the proxy
    // (which would apply middle's header rule).
    let mut front = stage.h1(FRONT);
    let via = stage.block(get(&mut front, "front", "/", &[("x-via", "front")]));
    assert_eq!(via.status, 200, "{via:?}");
    assert_eq!(via.backend(), "middle-l4");
}

#[test]
fn connections_the_kernel_did_not_redirect_are_refused_and_counted() {
    if !kernel_tests_enabled("connections_the_kernel_did_not_redirect_are_refused_and_counted") {
        return;
    }
    let mut stage = stage();
    // Straight to the proxy's address: no original destination.
    let mut stream = stage.connect(PROXY, 1).pop().unwrap();
    let read = stage.block(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream
            .write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.map(|_| buf)
    });
    match read {
        Ok(bytes) => assert!(bytes.is_empty(), "the proxy answered: {bytes:?}"),
        // A reset is a refusal too.
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
    }
    let metrics = stage.metrics();
    let refused = metric(
        &metrics,
        r#"refused_connections_total{reason="no_original_destination"}"#,
    );
    assert_eq!(refused, Some(1.0), "{metrics}");
    stage.agent.drain();
}

/// Istio's `outlierDetection` through the real hook and proxy, and beyond Istio: the
/// endpoint the proxy ejects after `consecutive5xxErrors` 503s gets no more requests at
/// once, and no new kernel-path connect of another service it backs, until
/// `baseEjectionTime` has passed; an established connection to it is untouched; a second
/// failing endpoint stays while `maxEjectionPercent` is out; `vsteer status` says why.
#[test]
fn an_ejected_endpoint_leaves_the_proxy_and_the_kernels_tables_until_its_time_has_passed() {
    if !kernel_tests_enabled(
        "an_ejected_endpoint_leaves_the_proxy_and_the_kernels_tables_until_its_time_has_passed",
    ) {
        return;
    }
    let stage = stage();
    // Kernel-path connects to the TCP service, each with one request: who answered. From
    // the node's namespace, where the backends' loopback addresses are (a pod's connect
    // would land on its own loopback).
    let through_kernel = |count: usize| -> Vec<(String, H1)> {
        let streams = stage.connect_from(&stage.l7.node, GUARDED_TCP, count);
        stage.block(async {
            let mut answered = Vec::new();
            for stream in streams {
                let mut h1 = H1::over(stream).await;
                let name = get(&mut h1, "guarded-tcp", "/", &[])
                    .await
                    .backend()
                    .to_string();
                answered.push((name, h1));
            }
            answered
        })
    };
    let v1 = "guarded-v1";
    // P(v1 drawn by none of 90 connects | a third each) < 1e-15.
    let mut before = through_kernel(90);
    let kept_at = before
        .iter()
        .position(|(name, _)| name == v1)
        .expect("a kernel connect reached v1 before any ejection");
    let (_, mut kept) = before.swap_remove(kept_at);
    drop(before);

    let mut h1 = stage.h1(GUARDED);
    let (answers, ejected_at) = stage.block(async {
        let mut answers = Vec::new();
        let mut ejected_at = None;
        // P(v1 drawn fewer than 3 times of 80 | a third each) < 1e-11.
        for _ in 0..80 {
            let reply = get(&mut h1, "guarded", &format!("/fail-on/{v1}"), &[]).await;
            answers.push((reply.status.as_u16(), reply.backend().to_string()));
            if answers.iter().filter(|(s, _)| *s == 503).count() == 3 && ejected_at.is_none() {
                ejected_at = Some(Instant::now());
            }
        }
        (answers, ejected_at)
    });
    let failed = answers.iter().filter(|(s, _)| *s == 503).count();
    assert_eq!(failed, 3, "v1 is out after its third 503: {answers:?}");
    let ejected_at = ejected_at.expect("three 503s");
    let third = answers.iter().rposition(|(s, _)| *s == 503).unwrap();
    assert!(
        answers[third + 1..].iter().all(|(_, b)| b != v1),
        "a request reached v1 after its ejection: {answers:?}"
    );
    // v2 fails too, but 34% of three lets one out: v2 stays and keeps failing
    // (P(v2 drawn fewer than 4 times of 40 | a half each) < 1e-7).
    let v2_failures = stage.block(async {
        let mut failures = 0;
        for _ in 0..40 {
            let reply = get(&mut h1, "guarded", "/fail-on/guarded-v2", &[]).await;
            failures += usize::from(reply.status == 503);
        }
        failures
    });
    assert!(
        v2_failures > 3,
        "v2 was ejected too: {v2_failures} failures"
    );

    // The kernel follows: new connects to the TCP service skip v1 (polled, bounded).
    let mut kernel_after = None;
    while ejected_at.elapsed() < Duration::from_secs(2) {
        if through_kernel(30).iter().all(|(name, _)| name != v1) {
            kernel_after = Some(ejected_at.elapsed());
            break;
        }
    }
    let kernel_after = kernel_after.expect("the kernel still sends connects to v1 after 2 s");
    let skipped = through_kernel(90);
    assert!(
        skipped.iter().all(|(name, _)| name != v1),
        "a kernel connect reached the ejected v1"
    );
    eprintln!("the kernel's tables left v1 out {kernel_after:?} after its ejection");
    // The connection made before the ejection still reaches v1.
    let again = stage.block(get(&mut kept, "guarded-tcp", "/", &[]));
    assert_eq!(again.backend(), v1);

    let status = stage.status();
    // All of the above while v1 was out (10 s), or the checks prove nothing.
    assert!(
        ejected_at.elapsed() < Duration::from_secs(9),
        "the checks took longer than the ejection: {:?}",
        ejected_at.elapsed()
    );
    let ejections: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("ejected endpoints"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(ejections.len(), 3, "{status}");
    assert!(
        ejections[2].starts_with("127.0.10.1:80")
            && ejections[2].contains("3 consecutive5xxErrors in a row")
            && ejections[2].contains("guarded.default.svc.cluster.local"),
        "{status}"
    );
    // The kernel's table of the TCP service: two backends, half each.
    let tcp_table: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with(GUARDED_TCP))
        .take(2)
        .collect();
    assert!(
        tcp_table.len() == 2
            && tcp_table[0].contains("127.0.10.2:80")
            && tcp_table[0].contains("50.000%")
            && tcp_table[1].contains("127.0.10.3:80"),
        "{status}"
    );

    // Back in the kernel's tables once 10 s have passed (at the next 500 ms tick).
    let mut back_after = None;
    while ejected_at.elapsed() < Duration::from_secs(16) {
        let seen = through_kernel(30).iter().any(|(name, _)| name == v1);
        if seen {
            back_after = Some(ejected_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let back_after = back_after.expect("v1 is not back in the kernel's tables 16 s after");
    eprintln!("v1 back in the kernel's tables {back_after:?} after its ejection");
    assert!(
        back_after >= Duration::from_millis(9950),
        "v1 came back before its 10 s: {back_after:?}"
    );
    let metrics = stage.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"ejections_total{reason="consecutive5xxErrors"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Istio's `tls` rules through the real hook: a pod's connection to a TLS service is sent
/// to the proxy, which reads the ClientHello's SNI without terminating TLS and passes the
/// connection through to the rule's endpoint; without a matching SNI, to the service's own
/// endpoint (the tcp rule, to the rule's endpoint, never applies on a TLS port).
#[test]
fn tls_connections_from_a_pod_are_routed_by_sni() {
    if !kernel_tests_enabled("tls_connections_from_a_pod_are_routed_by_sni") {
        return;
    }
    let stage = stage();
    // Plain TCP backends that answer their name: the TLS stays end to end (no handshake
    // completes here, and none needs to).
    let _v1 =
        vsteer_testkit::Backend::tcp(&stage.l7.node, support::addr("127.0.11.1:443"), "secure-v1")
            .expect("backend v1");
    let _v2 =
        vsteer_testkit::Backend::tcp(&stage.l7.node, support::addr("127.0.11.2:443"), "secure-v2")
            .expect("backend v2");
    let answer = |hello: Vec<u8>| -> String {
        let mut stream = stage.connect(SECURE, 1).pop().expect("a connection");
        stage.block(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(&hello)
                .await
                .expect("the ClientHello sent");
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply).await;
            reply
        })
    };
    let hello = vsteer_testkit::tls::client_hello;
    for _ in 0..5 {
        assert_eq!(
            answer(hello(Some("secure.default.svc.cluster.local"))),
            "secure-v1\n"
        );
        assert_eq!(answer(hello(Some("other.example"))), "secure-v2\n");
        assert_eq!(answer(hello(None)), "secure-v2\n");
    }
    let metrics = stage.metrics();
    assert_eq!(
        metric(&metrics, r#"tls_connections_total{route="sni"}"#),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"tls_connections_total{route="fallback"}"#),
        Some(10.0),
        "{metrics}"
    );
}

/// Istio's protocol sniffing through the real hook: a port of undeclared protocol with
/// http rules goes to the proxy; a pod's HTTP connection gets the rules per request, a
/// connection that does not speak HTTP goes whole to the tcp route.
#[test]
fn a_sniffed_port_serves_pods_http_by_rule_and_the_rest_by_the_tcp_route() {
    if !kernel_tests_enabled(
        "a_sniffed_port_serves_pods_http_by_rule_and_the_rest_by_the_tcp_route",
    ) {
        return;
    }
    let stage = stage();
    let _v3 = vsteer_testkit::Backend::tcp(
        &stage.l7.node,
        support::addr("127.0.12.3:8000"),
        "sniffed-v3",
    )
    .expect("backend v3");
    let mut h1 = stage.h1(SNIFFED);
    let (two, one) = stage.block(async {
        let two = get(&mut h1, "sniffed", "/", &[("x-v", "2")]).await;
        let one = get(&mut h1, "sniffed", "/", &[]).await;
        (two, one)
    });
    assert_eq!((two.backend(), one.backend()), ("sniffed-v2", "sniffed-v1"));
    let mut stream = stage.connect(SNIFFED, 1).pop().expect("a connection");
    let reply = stage.block(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"\x00\x01binary")
            .await
            .expect("bytes sent");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply).await;
        reply
    });
    assert_eq!(reply, "sniffed-v3\n");
    let metrics = stage.metrics();
    assert_eq!(
        metric(&metrics, "opaque_connections_total"),
        Some(1.0),
        "{metrics}"
    );
}
