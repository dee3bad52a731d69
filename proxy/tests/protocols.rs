//! Protocols through the proxy: gRPC over HTTP/2 with trailers both ways, WebSocket upgrades,
//! chunked bodies streamed (never buffered whole), and bad or slow clients, who get a 4xx or
//! a closed connection within a bound while everyone else is served.

mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VIP: &str = "127.100.0.1:9080";
const HOST: &str = "reviews.default.svc.cluster.local:9080";

async fn two_versions(protocol: &str, http: &str) -> (Vec<Backend>, vsteer_plan::Plan) {
    two_versions_with(protocol, http, "").await
}

/// [`two_versions`] with `policy` as the DestinationRule's traffic policy.
async fn two_versions_with(
    protocol: &str,
    http: &str,
    policy: &str,
) -> (Vec<Backend>, vsteer_plan::Plan) {
    let backends = vec![Backend::start("v1").await, Backend::start("v2").await];
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        protocol,
        &[(&backends[0], "v1"), (&backends[1], "v2")],
    ) + &destination_rule("reviews", &["v1", "v2"], policy)
        + &virtual_service("reviews", http);
    (backends, plan_from_yaml(&yaml))
}

const BY_HEADER: &str = "  - match: [{headers: {x-route: {exact: b}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: reviews, subset: v1}}]
";

fn channel_body() -> (http_body_util::channel::Sender<Bytes, Infallible>, Body) {
    let (tx, body) = Channel::<Bytes, Infallible>::new(1);
    (tx, body.map_err(|e| match e {}).boxed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_call_routed_by_header_with_trailers_both_ways() {
    let (_backends, plan) = two_versions("GRPC", BY_HEADER).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H2::connect(proxy.addr).await;
    // A gRPC message: uncompressed flag, 4-byte length, payload.
    let message = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    for (route, backend) in [("b", "v2"), ("a", "v1"), ("b", "v2")] {
        let (mut tx, body) = channel_body();
        let req = request(
            "POST",
            &format!("http://{HOST}/pkg.Greeter/SayHello"),
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-route", route),
            ],
            body,
        );
        let sending = tokio::spawn({
            let message = message.clone();
            async move {
                tx.send_data(message).await.unwrap();
                let mut trailers = HeaderMap::new();
                trailers.insert("x-client", HeaderValue::from_static("hello-trailer"));
                tx.send_trailers(trailers).await.unwrap();
            }
        });
        let reply = client.send(req).await.expect("a gRPC response");
        sending.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/grpc");
        assert_eq!(reply.bytes, message);
        let trailers = reply.trailers.expect("response trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-backend"], backend);
        assert_eq!(
            trailers["x-client-echo"], "hello-trailer",
            "request trailers reached the backend"
        );
        // A GRPC port: the proxy speaks HTTP/2 upstream.
        assert_eq!(trailers["x-version"], "HTTP/2.0");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let (_backends, plan) = two_versions("HTTP", BY_HEADER).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    for (route, backend) in [("b", "v2"), ("a", "v1")] {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{HOST}/chat"),
            )
            .unwrap();
        req.headers_mut()
            .insert("x-route", HeaderValue::from_str(route).unwrap());
        let (mut ws, response) = tokio_tungstenite::client_async(req, stream)
            .await
            .expect("the WebSocket handshake through the proxy");
        assert_eq!(response.status(), 101);
        for i in 0..5 {
            ws.send(format!("hello {i}").into()).await.unwrap();
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an echo")
                .expect("a message")
                .expect("no error");
            assert_eq!(
                msg.into_text().unwrap().as_str(),
                format!("{backend}: hello {i}")
            );
        }
        ws.close(None).await.unwrap();
    }
    proxy.stop().await;
}

/// As Istio configures Envoy: WebSocket is the only upgrade; an `h2c` upgrade is served as
/// the plain request it also is (Envoy's HTTP/1.1 codec strips it); any other gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_upgrades_pass_h2c_is_stripped_others_get_403() {
    let (_backends, plan) = two_versions("HTTP", BY_HEADER).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let reply = client
        .get(
            HOST,
            "/",
            &[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "v1");
    for stripped in [
        "header upgrade:",
        "header http2-settings:",
        "header connection:",
    ] {
        assert!(
            !reply.body.contains(stripped),
            "{stripped} reached the backend: {}",
            reply.body
        );
    }
    for other in ["foo/1", "TLS/1.2"] {
        let mut client = H1::connect(proxy.addr).await;
        let reply = client
            .get(HOST, "/", &[("connection", "upgrade"), ("upgrade", other)])
            .await;
        assert_eq!(reply.status, 403, "upgrade {other}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_stream_without_buffering() {
    let (_backends, plan) = two_versions("HTTP", BY_HEADER).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    let (mut tx, body) = channel_body();
    tx.send_data(Bytes::from_static(b"chunk-0;")).await.unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.send_raw(request("POST", "/echo", &[("host", HOST)], body)),
    )
    .await
    .expect("response headers before the request body ends")
    .expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-backend"], "v1");
    let mut body = response.into_body();
    // Each chunk comes back before the next is sent: nothing waits for the whole body.
    for i in 0..20 {
        let expected = format!("chunk-{i};");
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("the echo of a chunk while the request is still open")
                .expect("a frame")
                .expect("no error");
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(String::from_utf8_lossy(&got), expected);
        if i < 19 {
            tx.send_data(Bytes::from(format!("chunk-{};", i + 1)))
                .await
                .unwrap();
        }
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the body ends")
        .expect("no error");
    assert!(rest.to_bytes().is_empty());
    // A large body passes intact, in both directions.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let reply = client
        .send(request(
            "POST",
            "/echo",
            &[("host", HOST)],
            full(big.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(reply.bytes.len(), big.len());
    assert!(reply.bytes == big[..]);
    proxy.stop().await;
}

/// Writes `bytes` (ignoring a failure: the proxy may close first) and reads until the
/// proxy closes, for up to 10 s.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the proxy answers or closes within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_gets_4xx_or_a_closed_connection() {
    let (_backends, plan) = two_versions("HTTP", BY_HEADER).await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let malformed = exchange(proxy.addr, b"GARBAGE\r\n\r\n").await;
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed:?}");
    let bad_header = exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    )
    .await;
    assert!(
        bad_header.is_empty() || bad_header.starts_with("HTTP/1.1 400"),
        "{bad_header:?}"
    );
    let mut huge = b"GET / HTTP/1.1\r\nHost: reviews\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = exchange(proxy.addr, &huge).await;
    assert!(
        too_large.is_empty() || too_large.starts_with("HTTP/1.1 431"),
        "{:?}",
        &too_large[..too_large.len().min(80)]
    );
    let mut many = b"GET / HTTP/1.1\r\nHost: reviews\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let too_many = exchange(proxy.addr, &many).await;
    assert!(too_many.starts_with("HTTP/1.1 431"), "{too_many:?}");
    eprintln!(
        "malformed: {:?}; too large: {:?}; too many: {:?}",
        malformed.lines().next(),
        too_large.lines().next(),
        too_many.lines().next()
    );
    // The whole head over the limit may be cut off by a reset before its 431 is read: either
    // is a closed connection, as the issue allows.
    // Everyone else is still served.
    let mut client = H1::connect(proxy.addr).await;
    assert_eq!(client.get(HOST, "/", &[]).await.backend(), "v1");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_closed_within_the_bound() {
    let (_backends, plan) = two_versions("HTTP", BY_HEADER).await;
    let options = vsteer_proxy::ProxyOptions {
        header_read_timeout: Duration::from_secs(1),
        ..test_options()
    };
    let proxy = Harness::with_options(&plan, fixed(VIP), options).await;
    let addr = proxy.addr;
    // One byte every 100 ms, for up to 10 s: the head never completes.
    let slow = tokio::spawn(async move {
        let start = Instant::now();
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            let _ = write
                .write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\nX-Slow: ")
                .await;
            for _ in 0..100 {
                if write.write_all(b"a").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut sink = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut sink)).await;
        writer.abort();
        (
            closed.is_ok(),
            start.elapsed(),
            String::from_utf8_lossy(&sink).into_owned(),
        )
    });
    // Connected, then nothing at all; and a partial HTTP/2 preface (hyper has no timer while
    // it tells HTTP/1.1 from HTTP/2).
    let silent = |bytes: &'static [u8]| {
        tokio::spawn(async move {
            let start = Instant::now();
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            let mut sink = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
            (closed.is_ok(), start.elapsed())
        })
    };
    let quiet = silent(b"");
    let preface = silent(b"PRI * HTTP/2.0\r\n");
    // Meanwhile another client is served.
    let mut client = H1::connect(addr).await;
    for _ in 0..20 {
        assert_eq!(client.get(HOST, "/", &[]).await.backend(), "v1");
    }
    let (closed, elapsed, answer) = slow.await.unwrap();
    assert!(closed, "the slow client was not closed within 10 s");
    eprintln!("slow client closed after {elapsed:?} ({answer:?})");
    for (what, task) in [("silent", quiet), ("partial preface", preface)] {
        let (closed, elapsed) = task.await.unwrap();
        assert!(closed, "the {what} client was not closed within 10 s");
        eprintln!("{what} client closed after {elapsed:?}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_local_replies_take_grpc_form() {
    let backends = [Backend::start("v1").await];
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "GRPC",
        &[(&backends[0], "v1")],
    ) + &destination_rule("reviews", &["v1", "v9"], "")
        + &virtual_service(
            "reviews",
            "  - match: [{headers: {x-route: {exact: none}}}]
    route: [{destination: {host: reviews, subset: v9}}]
  - match: [{uri: {prefix: /pkg.}}]
    route: [{destination: {host: reviews, subset: v1}}]
",
        );
    let plan = plan_from_yaml(&yaml);
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H2::connect(proxy.addr).await;
    let call = |path: &str, route: &str| {
        request(
            "POST",
            &format!("http://{HOST}{path}"),
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-route", route),
            ],
            full(Bytes::from_static(b"\x00\x00\x00\x00\x00")),
        )
    };
    // No endpoint: UNAVAILABLE (14), trailers-only, as Envoy answers a gRPC request.
    let reply = client.send(call("/pkg.S/M", "none")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["grpc-status"], "14");
    assert_eq!(reply.headers["grpc-message"], "no healthy upstream");
    assert!(reply.bytes.is_empty());
    // No route: UNIMPLEMENTED (12).
    let reply = client.send(call("/other.S/M", "x")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["grpc-status"], "12");
    // And a routed call still works.
    let reply = client.send(call("/pkg.S/M", "x")).await.unwrap();
    assert_eq!(reply.trailers.unwrap()["grpc-status"], "0");
    // Local replies count by the HTTP status they stand for (503, 404), though they went
    // out as HTTP 200; the routed call is a 2xx.
    let stats = proxy.stats.snapshot();
    assert_eq!(stats.responses, [0, 1, 0, 1, 1], "{stats:?}");
    proxy.stop().await;
}

/// A WebSocket tunnel holds a connection of its endpoint's pool: under `maxConnections: 1`
/// a second upgrade while the first tunnel is open overflows (503 at once, as a tunnel does
/// not wait), and once the tunnel has closed the next one gets the place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_counts_in_max_connections() {
    let (_backends, plan) = two_versions_with(
        "HTTP",
        "  - route: [{destination: {host: reviews, subset: v1}}]\n",
        "    connectionPool: {tcp: {maxConnections: 1}}\n",
    )
    .await;
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let upgrade = || async {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        tokio_tungstenite::client_async(format!("ws://{HOST}/chat"), stream).await
    };
    let (mut first, response) = upgrade().await.expect("the first tunnel");
    assert_eq!(response.status(), 101);
    match upgrade().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["x-envoy-overloaded"], "true");
        }
        other => panic!("a second tunnel beyond maxConnections: {other:?}"),
    }
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    drop(first);
    let mut opened = None;
    for _ in 0..200 {
        if let Ok((ws, _)) = upgrade().await {
            opened = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ws = opened.expect("a tunnel once the first closed");
    ws.send("again".into()).await.unwrap();
    let echo = ws.next().await.expect("an echo").expect("no error");
    assert_eq!(echo.into_text().unwrap().as_str(), "v1: again");
    proxy.stop().await;
}

/// A ServiceEntry endpoint line: `addr` serving port `port_name`, labelled `version`.
fn endpoint_yaml(addr: std::net::SocketAddr, port_name: &str, version: &str) -> String {
    format!(
        "  - {{address: {}, ports: {{{port_name}: {}}}, labels: {{version: {version}}}}}\n",
        addr.ip(),
        addr.port()
    )
}

/// A TCP backend that reads one chunk and answers `name:<bytes read>`, then closes.
async fn tls_backend(name: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let _ = stream.write_all(format!("{name}:{n}").as_bytes()).await;
            });
        }
    });
    addr
}

/// Istio's `tls` rules: TLS connections routed by the SNI of their ClientHello, which the
/// chosen endpoint receives whole (never terminated); the most specific SNI wins; no SNI,
/// an SNI no rule takes, or no TLS at all, goes to the service's own endpoints (Istio builds
/// no TCP chain for a TLS port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_are_routed_by_sni_and_passed_through() {
    let (v1, v2, own) = (
        tls_backend("v1").await,
        tls_backend("v2").await,
        tls_backend("own").await,
    );
    let endpoint = |addr, version| endpoint_yaml(addr, "tls", version);
    let entry = |name: &str, vip: &str, endpoints: String| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.example.com]
  addresses: [{vip}]
  ports: [{{number: 9080, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints:
{endpoints}---
"
        )
    };
    let yaml = entry("api", "127.100.0.1", endpoint(own, "own"))
        + &entry(
            "pool",
            "127.100.0.2",
            endpoint(v1, "v1") + &endpoint(v2, "v2"),
        )
        + &destination_rule("pool", &["v1", "v2"], "")
            .replace("host: pool", "host: pool.example.com")
        + "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com, '*.api.example.com']
  tls:
  - match: [{sniHosts: ['*.api.example.com']}]
    route: [{destination: {host: pool.example.com, subset: v2}}]
  - match: [{sniHosts: [a.api.example.com]}]
    route: [{destination: {host: pool.example.com, subset: v1}}]
";
    let plan = plan_from_yaml(&yaml);
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let send = |bytes: Vec<u8>| async move {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
            .await
            .expect("a reply in time")
            .expect("a reply");
        reply
    };
    let hello = |sni| vsteer_testkit::tls::client_hello(sni);
    let a = hello(Some("a.api.example.com"));
    // The exact name beats the wildcard of the earlier rule; the ClientHello arrives whole.
    assert_eq!(send(a.clone()).await, format!("v1:{}", a.len()));
    let b = hello(Some("b.api.example.com"));
    assert_eq!(send(b.clone()).await, format!("v2:{}", b.len()));
    let other = hello(Some("other.test"));
    assert_eq!(send(other.clone()).await, format!("own:{}", other.len()));
    let bare = hello(None);
    assert_eq!(send(bare.clone()).await, format!("own:{}", bare.len()));
    assert_eq!(send(b"not TLS".to_vec()).await, "own:7");
    let stats = proxy.stats.snapshot();
    assert_eq!((stats.tls_by_sni, stats.tls_fallback), (2, 3));
    proxy.stop().await;
}

/// A port without a declared protocol, as Istio sniffs it: connections that speak HTTP
/// (HTTP/1.1 or the HTTP/2 preface) get the http rules per request, the others are passed
/// whole to the tcp route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sniffed_port_serves_http_by_its_rules_and_the_rest_by_its_tcp_route() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let opaque = tls_backend("opaque").await;
    let endpoint = |addr, version| endpoint_yaml(addr, "web", version);
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [127.100.0.1]
  ports: [{{number: 9080, name: web}}]
  resolution: STATIC
  endpoints:
{}{}{}---
{}{}",
        endpoint(v1.addr, "v1"),
        endpoint(v2.addr, "v2"),
        endpoint(opaque, "v3"),
        destination_rule("reviews", &["v1", "v2", "v3"], ""),
        virtual_service("reviews", BY_HEADER).replace(
            "spec:\n",
            "spec:\n  tcp:\n  - route: [{destination: {host: reviews, subset: v3}}]\n",
        ),
    );
    let plan = plan_from_yaml(&yaml);
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut h1 = H1::connect(proxy.addr).await;
    assert_eq!(h1.get(HOST, "/", &[("x-route", "b")]).await.backend(), "v2");
    assert_eq!(h1.get(HOST, "/", &[]).await.backend(), "v1");
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"\x00\x01binary hello").await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .expect("a reply in time")
        .expect("a reply");
    assert_eq!(reply, "opaque:14");
    assert_eq!(proxy.stats.snapshot().opaque_connections, 1);
    drop(h1);
    proxy.stop().await;
}
