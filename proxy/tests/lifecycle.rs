//! The proxy's life around requests: refused connections (no original destination, a
//! destination that is not proxied, the proxy itself), route table updates (new requests see
//! the new table at once, in-flight ones finish on theirs; updates that touch no proxied
//! service change nothing), concurrent clients of two VIPs, metrics, SO_MARK and shutdown.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan};

const VIP: &str = "127.100.0.1:9080";
const HOST: &str = "reviews.default.svc.cluster.local:9080";

fn key(vip: &str) -> ServiceKey {
    let vip: SocketAddr = vip.parse().unwrap();
    ServiceKey::new(vip.ip(), vip.port(), Protocol::Tcp)
}

/// reviews at 127.100.0.1:9080: every request (uri prefix `/`) to `subset`.
fn reviews_to(backends: &[Backend], subset: &str) -> Plan {
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "HTTP",
        &[(&backends[0], "v1"), (&backends[1], "v2")],
    ) + &destination_rule("reviews", &["v1", "v2"], "")
        + &virtual_service(
            "reviews",
            &format!(
                "  - match: [{{uri: {{prefix: /}}}}]\n    route: [{{destination: {{host: reviews, subset: {subset}}}}}]\n"
            ),
        );
    plan_from_yaml(&yaml)
}

async fn two_backends() -> Vec<Backend> {
    vec![Backend::start("v1").await, Backend::start("v2").await]
}

/// Connects, sends a request and reads: the proxy must close without answering.
async fn refused(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("closed within 10 s");
    assert!(
        read.is_err() || out.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_miss_is_closed_and_counted() {
    let backends = two_backends().await;
    let plan = reviews_to(&backends, "v1");
    let none: Arc<dyn vsteer_proxy::OriginalDestination> =
        Arc::new(|_: SocketAddr, _: SocketAddr| None);
    let proxy = Harness::start(&plan, none).await;
    refused(proxy.addr).await;
    refused(proxy.addr).await;
    eventually("two refusals counted", || {
        proxy.stats.snapshot().refused_no_original_destination == 2
    })
    .await;
    let stats = proxy.stats.snapshot();
    assert_eq!(stats.connections_accepted, 0);
    assert_eq!(stats.responses, [0; 5]);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unproxied_destinations_and_the_proxy_itself_are_refused() {
    let backends = two_backends().await;
    let plan = reviews_to(&backends, "v1");
    let own: Arc<OnceLock<SocketAddr>> = Arc::new(OnceLock::new());
    let own2 = own.clone();
    let original: Arc<dyn vsteer_proxy::OriginalDestination> = Arc::new(
        move |peer: SocketAddr, _: SocketAddr| match peer.ip().to_string().as_str() {
            "127.0.2.1" => Some("127.100.0.9:9080".parse().unwrap()),
            "127.0.2.2" => own2.get().copied(),
            _ => Some(VIP.parse().unwrap()),
        },
    );
    let proxy = Harness::start(&plan, original).await;
    own.set(proxy.addr).unwrap();
    for (from, counter) in [("127.0.2.1", "not proxied"), ("127.0.2.2", "own address")] {
        let stream = connect_from(Some(from.parse().unwrap()), proxy.addr).await;
        let (mut read, mut write) = stream.into_split();
        use tokio::io::AsyncWriteExt;
        let _ = write
            .write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut out))
            .await
            .expect("closed within 10 s");
        assert!(out.is_empty(), "{counter}: answered");
    }
    eventually("refusals counted", || {
        let s = proxy.stats.snapshot();
        s.refused_not_proxied == 1 && s.refused_own_address == 1
    })
    .await;
    // The proxied VIP is served.
    let mut client = H1::connect(proxy.addr).await;
    assert_eq!(client.get(HOST, "/", &[]).await.backend(), "v1");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_of_two_vips_get_their_own_answers() {
    let backends = [
        Backend::start("reviews").await,
        Backend::start("ratings").await,
    ];
    let yaml = service_entry(
        "reviews",
        "127.100.0.1",
        9080,
        "HTTP",
        &[(&backends[0], "v1")],
    ) + &virtual_service(
        "reviews",
        "  - match: [{uri: {prefix: /}}]\n    route: [{destination: {host: reviews}}]\n",
    ) + &service_entry(
        "ratings",
        "127.100.0.2",
        9080,
        "HTTP",
        &[(&backends[1], "v1")],
    ) + &virtual_service(
        "ratings",
        "  - match: [{uri: {prefix: /}}]\n    route: [{destination: {host: ratings}}]\n",
    );
    let plan = plan_from_yaml(&yaml);
    let proxy = Harness::start(
        &plan,
        by_peer_ip(&[
            ("127.0.2.1", "127.100.0.1:9080"),
            ("127.0.2.2", "127.100.0.2:9080"),
        ]),
    )
    .await;
    assert_eq!(proxy.tables.len(), 2);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (from, expected) = if i % 2 == 0 {
            ("127.0.2.1", "reviews")
        } else {
            ("127.0.2.2", "ratings")
        };
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = H1::connect_from(Some(from.parse().unwrap()), addr).await;
            for _ in 0..5 {
                assert_eq!(client.get("x", "/", &[]).await.backend(), expected);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(proxy.stats.snapshot().connections_accepted, 100);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_applies_to_new_requests_while_in_flight_ones_finish() {
    let backends = two_backends().await;
    let proxy = Harness::start(&reviews_to(&backends, "v1"), fixed(VIP)).await;
    let mut kept = H1::connect(proxy.addr).await;
    assert_eq!(kept.get(HOST, "/", &[]).await.backend(), "v1");
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move {
        let mut client = H1::connect(addr).await;
        client.get(HOST, "/hold", &[]).await.backend().to_string()
    });
    eventually("the request is held on v1", || backends[0].held() == 1).await;
    let before = proxy.tables.generation();
    proxy
        .tables
        .update(&reviews_to(&backends, "v2"), &[key(VIP)]);
    assert_eq!(proxy.tables.generation(), before + 1);
    // New requests, also on a connection opened before the update, follow the new table.
    assert_eq!(kept.get(HOST, "/", &[]).await.backend(), "v2");
    let mut fresh = H1::connect(proxy.addr).await;
    assert_eq!(fresh.get(HOST, "/", &[]).await.backend(), "v2");
    backends[0].release(1);
    assert_eq!(
        in_flight.await.unwrap(),
        "v1",
        "the in-flight request finished where it started"
    );
    proxy.stop().await;
}

/// Reads one HTTP/1.1 response head and its `Content-Length` body from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|n| n.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Whether the proxy closes `stream` within 10 s (reading and dropping whatever comes).
async fn closes(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_leaving_the_proxy_drains_its_http1_connections() {
    use tokio::io::AsyncWriteExt;
    let backends = two_backends().await;
    let proxy = Harness::start(&reviews_to(&backends, "v1"), fixed(VIP)).await;
    // One idle keep-alive connection, one with a request in flight.
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut busy = TcpStream::connect(proxy.addr).await.unwrap();
    busy.write_all(b"GET /hold HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .await
        .unwrap();
    eventually("the request is held on v1", || backends[0].held() == 1).await;

    proxy.tables.update(&Plan::default(), &[key(VIP)]);
    assert_eq!(proxy.tables.len(), 0);
    // The idle connection is closed at once, so its client reconnects through the kernel.
    assert!(closes(&mut idle).await, "the idle connection stayed open");
    // The request in flight finishes on the rules it started with, then the connection
    // closes.
    backends[0].release(1);
    let answer = read_response(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\r\n\r\nv1\n"), "{answer}");
    assert!(closes(&mut busy).await, "the busy connection stayed open");
    // New connections to the VIP are refused.
    refused(proxy.addr).await;
    assert_eq!(proxy.stats.snapshot().responses[4], 0, "no 503 was sent");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_leaving_the_proxy_sends_goaway_on_http2() {
    let backends = two_backends().await;
    let proxy = Harness::start(&reviews_to(&backends, "v1"), fixed(VIP)).await;
    let client = H2::connect(proxy.addr).await;
    let held = tokio::spawn({
        let mut c = client.clone();
        async move { c.get(HOST, "/hold", &[]).await }
    });
    eventually("the stream is held on v1", || backends[0].held() == 1).await;

    proxy.tables.update(&Plan::default(), &[key(VIP)]);
    // Until the GOAWAY reaches the client, new streams are still served, from the rules the
    // connection had; never a 503 (which would fail a gRPC channel for good). Then the
    // client stops opening streams on it.
    let mut refused_streams = false;
    for _ in 0..200 {
        let mut c = client.clone();
        match c
            .send(request("GET", &format!("http://{HOST}/"), &[], empty()))
            .await
        {
            Ok(reply) => assert_eq!(reply.backend(), "v1", "{reply:?}"),
            Err(_) => {
                refused_streams = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused_streams,
        "no GOAWAY: the connection kept taking streams"
    );
    // The stream in flight finishes.
    backends[0].release(1);
    let reply = held.await.unwrap();
    assert_eq!(reply.backend(), "v1");
    assert_eq!(proxy.stats.snapshot().responses[4], 0, "no 503 was sent");
    eventually("the connection is gone", || {
        proxy.stats.snapshot().connections_active == 0
    })
    .await;
    proxy.stop().await;
}

fn kernel_service(i: u32) -> ServicePlan {
    ServicePlan {
        key: ServiceKey::new(
            std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
            80,
            Protocol::Tcp,
        ),
        host: "h".into(),
        resource: ResourceId::new(Kind::ServiceEntry, "default", "h"),
        route: None,
        load_balancer: LoadBalancer::default(),
        backends: Vec::new(),
        decision: Decision::Kernel,
        http: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_that_touch_no_proxied_service_change_nothing() {
    let backends = two_backends().await;
    let mut plan = reviews_to(&backends, "v1");
    for i in 0..5_000 {
        plan.insert(kernel_service(i));
    }
    let tables = vsteer_proxy::RouteTables::new();
    tables.replace(&plan);
    assert_eq!(tables.len(), 1);
    let generation = tables.generation();
    // Kernel services changed (and one that never existed): the map is not even copied.
    let changed: Vec<ServiceKey> = (0..10)
        .map(|i| kernel_service(i).key)
        .chain([key("127.9.9.9:1")])
        .collect();
    plan.insert(ServicePlan {
        load_balancer: LoadBalancer::RoundRobin,
        ..kernel_service(3)
    });
    tables.update(&plan, &changed);
    assert_eq!(tables.generation(), generation);
    // The proxied service, unchanged: nothing either.
    tables.update(&plan, &[key(VIP)]);
    assert_eq!(tables.generation(), generation);
    // A kernel service becoming proxied is picked up.
    let proxied = plan.service(&key(VIP)).unwrap().clone();
    let mut moved = kernel_service(7);
    moved.decision = proxied.decision.clone();
    moved.http = proxied.http.clone();
    plan.insert(moved.clone());
    tables.update(&plan, &[moved.key]);
    assert_eq!(tables.generation(), generation + 1);
    assert_eq!(tables.len(), 2);
    // UDP keys are never proxied.
    let mut udp = moved.clone();
    udp.key.protocol = Protocol::Udp;
    plan.insert(udp.clone());
    tables.update(&plan, &[udp.key]);
    assert_eq!(tables.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported() {
    let backends = two_backends().await;
    let proxy = Harness::start(&reviews_to(&backends, "v1"), fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    for _ in 0..3 {
        client.get(HOST, "/", &[]).await;
    }
    let mut registry = prometheus_client::registry::Registry::default();
    vsteer_proxy::register_metrics(&mut registry, proxy.stats.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "vsteer_proxy_requests_total{class=\"2xx\"} 3",
        "vsteer_proxy_accepted_connections_total 1",
        "vsteer_proxy_active_connections 1",
        "vsteer_proxy_refused_connections_total{reason=\"no_original_destination\"} 0",
        "vsteer_proxy_upstream_connect_errors_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in:\n{text}"
        );
    }
    drop(client);
    eventually("the connection is gone", || {
        proxy.stats.snapshot().connections_active == 0
    })
    .await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sockets_carry_the_mark_or_the_error_names_the_endpoint() {
    let backends = two_backends().await;
    let options = vsteer_proxy::ProxyOptions {
        mark: Some(0x5e7),
        ..test_options()
    };
    let proxy = Harness::with_options(&reviews_to(&backends, "v1"), fixed(VIP), options).await;
    let mut client = H1::connect(proxy.addr).await;
    let reply = client.get(HOST, "/", &[]).await;
    let privileged = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| {
            l.starts_with("CapEff:")
                && u64::from_str_radix(l[7..].trim(), 16).unwrap_or(0) & (1 << 12) != 0
        });
    if privileged {
        // CAP_NET_ADMIN: SO_MARK is set and the request goes through.
        assert_eq!(reply.backend(), "v1");
    } else {
        assert_eq!(reply.status, 503);
        assert_eq!(proxy.stats.snapshot().upstream_connect_errors, 1);
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let backends = two_backends().await;
    let proxy = Harness::start(&reviews_to(&backends, "v1"), fixed(VIP)).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move {
        let mut client = H1::connect(addr).await;
        client.get(HOST, "/hold", &[]).await.backend().to_string()
    });
    eventually("the request is held", || backends[0].held() == 1).await;
    let stopping = tokio::spawn(proxy.stop());
    backends[0].release(1);
    assert_eq!(in_flight.await.unwrap(), "v1");
    stopping.await.unwrap();
    // Stopped: nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_vip_and_endpoints() {
    let backends = [
        Backend::start_at("v1", "[::1]:0".parse().unwrap()).await,
        Backend::start_at("v2", "[::1]:0".parse().unwrap()).await,
    ];
    let yaml = service_entry(
        "reviews",
        "fd00::1",
        9080,
        "HTTP",
        &[(&backends[0], "v1"), (&backends[1], "v2")],
    ) + &destination_rule("reviews", &["v1", "v2"], "")
        + &virtual_service(
            "reviews",
            "  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
",
        );
    let plan = plan_from_yaml(&yaml);
    let options = vsteer_proxy::ProxyOptions {
        listen: vec!["[::1]:0".parse().unwrap()],
        ..test_options()
    };
    let proxy = Harness::with_options(&plan, fixed("[fd00::1]:9080"), options).await;
    assert!(proxy.addr.is_ipv6());
    let mut client = H1::connect(proxy.addr).await;
    let jason = client
        .get("reviews:9080", "/", &[("end-user", "jason")])
        .await;
    assert_eq!(jason.backend(), "v2");
    assert_eq!(jason.seen_header("x-forwarded-for"), ["::1"]);
    assert_eq!(client.get("reviews:9080", "/", &[]).await.backend(), "v1");
    proxy.stop().await;
}

/// The metrics text of `stats`.
fn metrics(stats: &Arc<vsteer_proxy::ProxyStats>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    vsteer_proxy::register_metrics(&mut registry, stats.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn assert_metric(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "{line:?} missing in:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_a_destination_is_counted_as_cluster_not_found() {
    let backends = two_backends().await;
    let mut plan = reviews_to(&backends, "v1");
    // What a route whose destinations all failed to resolve compiles to.
    let mut service = plan.service(&key(VIP)).unwrap().clone();
    let mut table = (**service.http.as_ref().unwrap()).clone();
    for rule in &mut table.rules {
        rule.action = vsteer_plan::http::HttpAction::Route {
            destinations: Vec::new(),
            weighted: false,
        };
    }
    service.http = Some(Arc::new(table));
    plan.insert(service);
    let proxy = Harness::start(&plan, fixed(VIP)).await;
    let mut client = H1::connect(proxy.addr).await;
    assert_eq!(client.get(HOST, "/", &[]).await.status, 503);
    let text = metrics(&proxy.stats);
    assert_metric(
        &text,
        "vsteer_proxy_local_replies_total{reason=\"cluster_not_found\"} 1",
    );
    assert_metric(&text, "vsteer_proxy_requests_total{class=\"5xx\"} 1");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_aborting_its_request_body_is_a_downstream_reset_not_an_upstream_one() {
    use tokio::io::AsyncWriteExt;
    let backends = two_backends().await;
    let proxy = Harness::start(&reviews_to(&backends, "v1"), fixed(VIP)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /hold HTTP/1.1\r\nHost: reviews\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    // The request reached the backend (which answers nothing yet): then the client goes.
    eventually("the request is held on v1", || backends[0].held() == 1).await;
    drop(stream);
    eventually("the abort is counted", || {
        let text = metrics(&proxy.stats);
        text.contains("vsteer_proxy_downstream_resets_total 1")
            || text.contains("vsteer_proxy_upstream_resets_total 1")
    })
    .await;
    let text = metrics(&proxy.stats);
    assert_metric(&text, "vsteer_proxy_downstream_resets_total 1");
    assert_metric(&text, "vsteer_proxy_upstream_resets_total 0");
    // No response went out: none is counted.
    for class in ["2xx", "4xx", "5xx"] {
        assert_metric(
            &text,
            &format!("vsteer_proxy_requests_total{{class=\"{class}\"}} 0"),
        );
    }
    backends[0].release(1);
    proxy.stop().await;
}

/// As the agent runs the proxy: two workers, each on a thread of its own with a
/// single-threaded runtime, sharing the listener. Every connection is served (by whichever
/// worker woke first), upstream connections are reused across workers, and a stop ends
/// both threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_threads_of_their_own_share_the_listener_and_stop() {
    let backends = two_backends().await;
    let options = vsteer_proxy::ProxyOptions {
        workers: 2,
        ..test_options()
    };
    let proxy = vsteer_proxy::Proxy::bind(options, fixed(VIP), {
        let tables = vsteer_proxy::RouteTables::new();
        tables.replace(&reviews_to(&backends, "v2"));
        tables
    })
    .expect("bind");
    let (addr, stats) = (proxy.local_addrs()[0], proxy.stats());
    let (workers, stop) = proxy.into_workers();
    assert_eq!(workers.len(), 2);
    let threads: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(worker.serve())
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        tasks.push(tokio::spawn(async move {
            let mut client = H1::connect(addr).await;
            for _ in 0..5 {
                assert_eq!(client.get(HOST, "/", &[]).await.backend(), "v2");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(stats.snapshot().connections_accepted, 40);
    stop.stop();
    for thread in threads {
        let ended = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        ended
            .expect("no panic")
            .expect("the worker ends without error");
    }
    refused_to_connect(addr).await;
}

/// Nothing listens on `addr` any more.
async fn refused_to_connect(addr: SocketAddr) {
    let err = TcpStream::connect(addr).await.expect_err("still listening");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
