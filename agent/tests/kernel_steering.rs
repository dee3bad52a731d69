//! Kernel tests of Istio's L4 semantics as the real programs apply them: weighted splits
//! (chi-square at a false-failure rate of 1e-6), subsets, consistent hashing of the client,
//! IPv6, UDP, getpeername and refused connects.
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use support::{Fixture, addr, assert_only, counts, plan_from_yaml};
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::{
    Backend, ConnectOutcome, NetNs, Probe, connect_many, kernel_tests_enabled, probe_many, stats,
};

const DEADLINE: Duration = Duration::from_secs(120);

/// reviews at 127.100.0.1:9080 with one endpoint per version, and the subsets.
const REVIEWS: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [127.100.0.1]
  ports: [{number: 9080, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.1.1, labels: {version: v1}}
  - {address: 127.0.1.2, labels: {version: v2}}
  - {address: 127.0.1.3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
";

const V1: &str = "127.0.1.1:9080";
const V2: &str = "127.0.1.2:9080";
const V3: &str = "127.0.1.3:9080";

/// REVIEWS with a VirtualService whose one tcp rule routes to `route`.
fn with_route(route: &str) -> String {
    with_route_in(REVIEWS, route)
}

/// `base` with a VirtualService for reviews whose one tcp rule routes to `route`.
fn with_route_in(base: &str, route: &str) -> String {
    format!(
        "{base}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  tcp:
  - route:
{route}"
    )
}

fn split_test(name: &str, route: &str, connects: u32, backends: &[&str], shares: &[f64]) {
    if !kernel_tests_enabled(name) {
        return;
    }
    let fx = Fixture::new(&plan_from_yaml(&with_route(route)));
    let _servers = fx.tcp_backends(&[V1, V2, V3]);
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.1:9080"),
        connects,
        DEADLINE,
    )
    .unwrap();
    assert_only(&report, backends);
    let observed = counts(&report, backends);
    assert_eq!(observed.iter().sum::<u64>(), u64::from(connects));
    if shares.len() > 1 {
        stats::assert_split(&observed, shares).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn canary_80_20_over_subsets_passes_chi_square() {
    split_test(
        "canary_80_20_over_subsets_passes_chi_square",
        "    - {destination: {host: reviews, subset: v1}, weight: 80}\n    - {destination: {host: reviews, subset: v2}, weight: 20}\n",
        10_000,
        &[V1, V2],
        &[80.0, 20.0],
    );
}

#[test]
fn three_way_50_30_20_passes_chi_square() {
    split_test(
        "three_way_50_30_20_passes_chi_square",
        "    - {destination: {host: reviews, subset: v1}, weight: 50}\n    - {destination: {host: reviews, subset: v2}, weight: 30}\n    - {destination: {host: reviews, subset: v3}, weight: 20}\n",
        10_000,
        &[V1, V2, V3],
        &[50.0, 30.0, 20.0],
    );
}

/// `localityLbSetting.distribute` seen from the node's locality: 70% to its zone, 30% to
/// the other zone of its region, nothing to another region.
#[test]
fn locality_distribution_passes_chi_square() {
    if !kernel_tests_enabled("locality_distribution_passes_chi_square") {
        return;
    }
    let yaml = REVIEWS
        .replace(
            "labels: {version: v1}}",
            "labels: {version: v1}, locality: us-west/zone1}",
        )
        .replace(
            "labels: {version: v2}}",
            "labels: {version: v2}, locality: us-west/zone2}",
        )
        .replace(
            "labels: {version: v3}}",
            "labels: {version: v3}, locality: us-east/zone1}",
        )
        .replace(
            "  host: reviews\n",
            "  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to: {'us-west/zone1/*': 70, 'us-west/zone2/*': 30}
",
        );
    let loaded = vsteer_model::parse::parse_str("test.yaml", &yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let node = vsteer_compiler::locality::Locality::parse("us-west/zone1/rack7").unwrap();
    let compiled = vsteer_compiler::compile_at(&loaded.resources, &Plan::default(), Some(&node));
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let fx = Fixture::new(&compiled.plan);
    let _servers = fx.tcp_backends(&[V1, V2, V3]);
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.1:9080"),
        10_000,
        DEADLINE,
    )
    .unwrap();
    assert_only(&report, &[V1, V2]);
    let observed = counts(&report, &[V1, V2]);
    assert_eq!(observed.iter().sum::<u64>(), 10_000);
    stats::assert_split(&observed, &[70.0, 30.0]).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_subset_route_reaches_only_the_labelled_endpoints() {
    split_test(
        "a_subset_route_reaches_only_the_labelled_endpoints",
        "    - destination: {host: reviews, subset: v2}\n",
        1_000,
        &[V2],
        &[1.0],
    );
}

/// 99.9/0.1 cannot be written with Istio's integer percent weights; the datapath still honours
/// it (endpoint weights, later, and subsets with many endpoints produce such shares).
#[test]
fn a_one_in_a_thousand_share_gets_its_traffic() {
    if !kernel_tests_enabled("a_one_in_a_thousand_share_gets_its_traffic") {
        return;
    }
    let backend = |a: &str, weight: u32| BackendPlan {
        address: addr(a).ip(),
        port: addr(a).port(),
        weight,
        labels: vsteer_model::Labels::default(),
        subsets: Vec::new(),
    };
    let plan: Plan = [ServicePlan {
        key: ServiceKey::new(
            IpAddr::V4(Ipv4Addr::new(127, 100, 0, 1)),
            9080,
            Protocol::Tcp,
        ),
        host: "reviews.default.svc.cluster.local".into(),
        resource: ResourceId::new(Kind::ServiceEntry, "default", "reviews"),
        route: None,
        load_balancer: LoadBalancer::Random,
        backends: vec![
            backend(V1, WEIGHT_SCALE - WEIGHT_SCALE / 1000),
            backend(V2, WEIGHT_SCALE / 1000),
        ],
        decision: Decision::Kernel,
        http: None,
    }]
    .into_iter()
    .collect();
    let fx = Fixture::new(&plan);
    let _servers = fx.tcp_backends(&[V1, V2]);
    // 20,000 connects: the 0.1% backend expects 20; seeing none has probability 2e-9.
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.1:9080"),
        20_000,
        DEADLINE,
    )
    .unwrap();
    assert_only(&report, &[V1, V2]);
    let observed = counts(&report, &[V1, V2]);
    assert!(
        observed[1] > 0,
        "the 0.1% backend got nothing: {observed:?}"
    );
    stats::assert_split(&observed, &[999.0, 1.0]).unwrap();
}

#[test]
fn source_ip_hash_keeps_each_client_on_one_backend() {
    if !kernel_tests_enabled("source_ip_hash_keeps_each_client_on_one_backend") {
        return;
    }
    let yaml = REVIEWS.replace(
        "  host: reviews\n",
        "  host: reviews\n  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}\n",
    );
    let plan = plan_from_yaml(&yaml);
    assert_eq!(
        plan.services().next().unwrap().load_balancer,
        LoadBalancer::SourceIpHash
    );
    let fx = Fixture::new(&plan);
    let vip = addr("127.100.0.1:9080");
    // Each client is a network namespace of its own (a pod: one client IP), with its own
    // copy of the backends so that wherever the hash sends it, someone answers.
    let mut chosen = BTreeSet::new();
    for client in 0..20 {
        let ns = if client == 0 {
            None
        } else {
            Some(NetNs::new().unwrap())
        };
        let ns_ref = ns.as_ref().unwrap_or(&fx.ns);
        let _servers: Vec<Backend> = [V1, V2, V3]
            .iter()
            .map(|a| Backend::tcp(ns_ref, addr(a), a).unwrap())
            .collect();
        let connects = if client == 0 { 1_000 } else { 50 };
        let report = connect_many(ns_ref, Some(&fx.cgroup), vip, connects, DEADLINE).unwrap();
        let replies = report.replies();
        assert_eq!(replies.len(), 1, "client {client} was spread: {replies:?}");
        assert_eq!(replies.values().sum::<u64>(), u64::from(connects));
        chosen.extend(replies.into_keys());
    }
    // 20 clients all hashing onto one of 3 backends has probability 3^-19 ~ 1e-9.
    assert!(
        chosen.len() >= 2,
        "every client got the same backend: {chosen:?}"
    );
}

#[test]
fn getpeername_returns_the_vip_not_the_backend() {
    if !kernel_tests_enabled("getpeername_returns_the_vip_not_the_backend") {
        return;
    }
    let fx = Fixture::new(&plan_from_yaml(&with_route(
        "    - destination: {host: reviews, subset: v1}\n",
    )));
    let _servers = fx.tcp_backends(&[V1]);
    let vip = addr("127.100.0.1:9080");
    let report = connect_many(&fx.ns, Some(&fx.cgroup), vip, 50, DEADLINE).unwrap();
    for outcome in &report.outcomes {
        assert_eq!(
            outcome,
            &ConnectOutcome::Reached {
                reply: V1.into(),
                peer: vip
            }
        );
    }
}

/// REVIEWS plus a subset `none` that selects no endpoint, routed by `route`, and a listener
/// on the VIP itself: a refused connect then proves the hook refused it.
fn with_empty_subset(route: &str) -> (Fixture, Backend) {
    let yaml = REVIEWS.replace(
        "  - {name: v3, labels: {version: v3}}",
        "  - {name: v3, labels: {version: v3}}\n  - {name: none, labels: {version: v9}}",
    );
    let fx = Fixture::new(&plan_from_yaml(&with_route_in(&yaml, route)));
    let sentinel = Backend::tcp(&fx.ns, addr("127.100.0.1:9080"), "vip-itself").unwrap();
    (fx, sentinel)
}

#[test]
fn a_service_without_backends_refuses_at_once() {
    if !kernel_tests_enabled("a_service_without_backends_refuses_at_once") {
        return;
    }
    let (fx, _sentinel) = with_empty_subset("    - destination: {host: reviews, subset: none}\n");
    let started = Instant::now();
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.1:9080"),
        100,
        DEADLINE,
    )
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        report.failures(),
        BTreeMap::from([(libc::ECONNREFUSED, 100)])
    );
    // A timeout would take seconds per connect; refusing is immediate.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// Istio (Envoy) answers 503 for the share of a subset no DestinationRule defines and of one
/// that selects no endpoint; at connect time those shares are refused, the rest served.
#[test]
fn shares_of_undefined_and_empty_subsets_are_refused() {
    if !kernel_tests_enabled("shares_of_undefined_and_empty_subsets_are_refused") {
        return;
    }
    let (fx, _sentinel) = with_empty_subset(
        "    - {destination: {host: reviews, subset: v1}, weight: 60}\n    - {destination: {host: reviews, subset: undefined}, weight: 20}\n    - {destination: {host: reviews, subset: none}, weight: 20}\n",
    );
    let _servers = fx.tcp_backends(&[V1, V2, V3]);
    let connects = 10_000;
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.1:9080"),
        connects,
        DEADLINE,
    )
    .unwrap();
    let failures = report.failures();
    let refused = failures.get(&libc::ECONNREFUSED).copied().unwrap_or(0);
    assert_eq!(
        failures.values().sum::<u64>(),
        refused,
        "only ECONNREFUSED: {failures:?}"
    );
    let reached = counts(&report, &[V1]);
    assert_eq!(
        reached[0] + refused,
        u64::from(connects),
        "{:?}",
        report.replies()
    );
    stats::assert_split(&[reached[0], refused], &[60.0, 40.0]).unwrap();
}

const DNS: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns}
spec:
  hosts: [dns.example.internal]
  addresses: [127.100.0.53]
  ports: [{number: 53, name: dns, protocol: UDP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.5.1}
  - {address: 127.0.5.2}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: void}
spec:
  hosts: [void.example.internal]
  addresses: [127.100.0.54]
  ports: [{number: 53, name: dns, protocol: UDP}]
  resolution: STATIC
";

/// The DNS service's VIP and endpoints (see [`DNS`]).
const DNS_VIP: &str = "127.100.0.53:53";
const DNS_BACKENDS: [&str; 2] = ["127.0.5.1:53", "127.0.5.2:53"];

/// A UDP server at each DNS endpoint, answering with its address.
fn dns_servers(fx: &Fixture) -> Vec<Backend> {
    DNS_BACKENDS
        .iter()
        .map(|a| Backend::udp(&fx.ns, addr(a), a).unwrap())
        .collect()
}

#[test]
fn udp_requests_reach_backends_and_replies_come_from_the_vip() {
    if !kernel_tests_enabled("udp_requests_reach_backends_and_replies_come_from_the_vip") {
        return;
    }
    let fx = Fixture::new(&plan_from_yaml(DNS));
    let names = DNS_BACKENDS;
    let _servers = dns_servers(&fx);
    let vip = addr(DNS_VIP);
    for probe in [Probe::UdpUnconnected, Probe::UdpConnected] {
        let report = probe_many(&fx.ns, Some(&fx.cgroup), vip, probe, 400, DEADLINE).unwrap();
        assert_only(&report, &names);
        let observed = counts(&report, &names);
        assert_eq!(observed.iter().sum::<u64>(), 400, "{probe:?}");
        stats::assert_split(&observed, &[1.0, 1.0]).unwrap();
        for outcome in &report.outcomes {
            let ConnectOutcome::Reached { peer, .. } = outcome else {
                unreachable!()
            };
            assert_eq!(
                *peer, vip,
                "{probe:?}: the reply must seem to come from the VIP"
            );
        }
    }
    // No backend: the datagram is refused, not silently dropped.
    let void = probe_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.54:53"),
        Probe::UdpUnconnected,
        5,
        DEADLINE,
    )
    .unwrap();
    assert_eq!(void.failures(), BTreeMap::from([(libc::ECONNREFUSED, 5)]));
}

/// Sends one datagram from `socket` to `vip`; the backend that answered and where the
/// reply seemed to come from.
fn exchange(
    socket: &std::net::UdpSocket,
    vip: std::net::SocketAddr,
) -> (String, std::net::SocketAddr) {
    socket.send_to(b"?", vip).expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = socket.recv_from(&mut buf).expect("a reply");
    (String::from_utf8_lossy(&buf[..n]).trim().to_string(), from)
}

/// An unconnected UDP socket's datagrams to a VIP all reach one backend (a QUIC or DNS
/// client needs one server), sockets spread over the backends by their weights, replies
/// come from the VIP for the socket's whole life, however many other sockets are steered
/// meanwhile, and a changed backend set makes the next datagram pick again.
#[test]
fn a_udp_socket_keeps_its_backend_and_vip_until_the_backends_change() {
    if !kernel_tests_enabled("a_udp_socket_keeps_its_backend_and_vip_until_the_backends_change") {
        return;
    }
    // With a service whose backend does not listen, which the flood below dials.
    let flood_service = support::resource(
        "ServiceEntry",
        "flood",
        "  hosts: [flood.internal]
  addresses: [127.100.0.70]
  ports: [{number: 9, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.70.1}]
",
    );
    let mut fx = Fixture::new(&plan_from_yaml(&format!("{DNS}{flood_service}")));
    let names = DNS_BACKENDS;
    let _servers = dns_servers(&fx);
    let vip = addr(DNS_VIP);
    let sockets: Vec<std::net::UdpSocket> =
        vsteer_testkit::udp_sockets_in(&fx.ns, &fx.cgroup, libc::AF_INET, 60)
            .unwrap()
            .into_iter()
            .map(std::net::UdpSocket::from)
            .collect();
    let mut kept = Vec::new();
    for socket in &sockets {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let replies: BTreeSet<String> = (0..10)
            .map(|_| {
                let (backend, from) = exchange(socket, vip);
                assert_eq!(from, vip, "the reply must seem to come from the VIP");
                backend
            })
            .collect();
        assert_eq!(
            replies.len(),
            1,
            "one socket's datagrams reached {replies:?}"
        );
        kept.push(replies.into_iter().next().unwrap());
    }
    let per_backend: Vec<u64> = names
        .iter()
        .map(|n| kept.iter().filter(|k| k == n).count() as u64)
        .collect();
    stats::assert_split(&per_backend, &[1.0, 1.0]).unwrap();

    // 600,000 other steered connects (refused by a backend with no listener: each still
    // records its translation) leave every socket's replies coming from the VIP.
    let flood = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.100.0.70:9"),
        600_000,
        DEADLINE,
    )
    .unwrap();
    assert_eq!(
        flood.failures(),
        BTreeMap::from([(libc::ECONNREFUSED, 600_000)])
    );
    for (socket, backend) in sockets.iter().zip(&kept) {
        assert_eq!(exchange(socket, vip), (backend.clone(), vip));
    }

    // Without 127.0.5.2, its sockets pick again: every datagram reaches 127.0.5.1.
    let one = DNS.replace("  - {address: 127.0.5.2}\n", "");
    fx.datapath.apply(&plan_from_yaml(&one)).unwrap();
    for socket in &sockets {
        assert_eq!(exchange(socket, vip), (names[0].to_string(), vip));
    }
}

#[test]
fn ipv6_vips_reach_ipv6_backends_and_peers_see_the_vip() {
    if !kernel_tests_enabled("ipv6_vips_reach_ipv6_backends_and_peers_see_the_vip") {
        return;
    }
    let yaml = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web6}
spec:
  hosts: [web6.example.internal]
  addresses: ['fd00:100::1']
  ports: [{number: 8080, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: '::1', ports: {tcp: 18081}}
  - {address: '::1', ports: {tcp: 18082}}
";
    let fx = Fixture::new(&plan_from_yaml(yaml));
    let names = ["[::1]:18081", "[::1]:18082"];
    let _servers: Vec<Backend> = names
        .iter()
        .map(|a| Backend::tcp(&fx.ns, addr(a), a).unwrap())
        .collect();
    let vip = addr("[fd00:100::1]:8080");
    let report = connect_many(&fx.ns, Some(&fx.cgroup), vip, 400, DEADLINE).unwrap();
    assert_only(&report, &names);
    stats::assert_split(&counts(&report, &names), &[1.0, 1.0]).unwrap();
    for outcome in &report.outcomes {
        let ConnectOutcome::Reached { peer, .. } = outcome else {
            unreachable!()
        };
        assert_eq!(*peer, vip);
    }
}

/// Bookinfo's L4 routing tasks with real traffic: the fixtures of `examples/bookinfo/`
/// (reviews 80/20 to v1/v2, tcp-echo 80/20 on port 9000 and every endpoint on 9001, where no
/// rule applies) pass chi-square.
#[test]
fn bookinfo_canaries_split_real_connections_as_istio_does() {
    if !kernel_tests_enabled("bookinfo_canaries_split_real_connections_as_istio_does") {
        return;
    }
    let services = include_str!("../../examples/bookinfo/services.yaml");
    let rules = [
        include_str!("../../examples/bookinfo/reviews-80-20.yaml"),
        include_str!("../../examples/bookinfo/tcp-echo-20-v2.yaml"),
    ];
    let fx = Fixture::new(&plan_from_yaml(&format!(
        "{services}---\n{}---\n{}",
        rules[0], rules[1]
    )));
    let reviews = ["127.0.13.1:9080", "127.0.13.2:9080", "127.0.13.3:9080"];
    let echo_9000 = ["127.0.14.1:9000", "127.0.14.2:9000"];
    let echo_9001 = ["127.0.14.1:9001", "127.0.14.2:9001"];
    let _servers = fx.tcp_backends(&[&reviews[..], &echo_9000, &echo_9001].concat());
    for (vip, backends, shares) in [
        ("127.100.1.4:9080", &reviews[..2], [80.0, 20.0]),
        ("127.100.1.5:9000", &echo_9000[..], [80.0, 20.0]),
        ("127.100.1.5:9001", &echo_9001[..], [50.0, 50.0]),
    ] {
        let report = connect_many(&fx.ns, Some(&fx.cgroup), addr(vip), 5_000, DEADLINE).unwrap();
        assert_only(&report, backends);
        let observed = counts(&report, backends);
        assert_eq!(observed.iter().sum::<u64>(), 5_000, "{vip}");
        stats::assert_split(&observed, &shares).unwrap_or_else(|e| panic!("{vip}: {e}"));
    }
}
