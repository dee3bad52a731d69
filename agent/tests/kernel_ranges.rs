//! Kernel tests of CIDR addresses and `resolution: NONE`: every address of a range follows
//! its ServiceEntry, an exact VIP beats a range holding it and a longer range a shorter one,
//! a NONE range lets connects go on to the address dialled, and a VirtualService splits
//! between endpoints and a NONE host (chi-square at a false-failure rate of 1e-6).
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::{collections::BTreeMap, time::Duration};

use support::{Fixture, addr, assert_only, counts, plan_from_yaml, resource};
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::{Backend, ConnectOutcome, connect_many, kernel_tests_enabled, stats};

const DEADLINE: Duration = Duration::from_secs(120);

fn service_entry(name: &str, spec: &str) -> String {
    resource("ServiceEntry", name, spec)
}

/// A /16 pool with two endpoints.
const POOL: &str = "  hosts: [pool.internal]
  addresses: [127.50.0.0/16]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.2.1}
  - {address: 127.0.2.2}
";

/// One exact VIP inside the pool.
const PINNED: &str = "  hosts: [pinned.internal]
  addresses: [127.50.0.9]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.2.9}
";

/// A /24 inside the pool.
const RACK: &str = "  hosts: [rack.internal]
  addresses: [127.50.1.0/24]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.2.3}
";

/// A /24 inside the pool whose connects go where they were dialled.
const DIRECT: &str = "  hosts: [direct.internal]
  addresses: [127.50.2.0/24]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: NONE
";

const E1: &str = "127.0.2.1:5432";
const E2: &str = "127.0.2.2:5432";
const E3: &str = "127.0.2.3:5432";
const E9: &str = "127.0.2.9:5432";

fn all_entries() -> String {
    [
        ("pool", POOL),
        ("pinned", PINNED),
        ("rack", RACK),
        ("direct", DIRECT),
    ]
    .iter()
    .map(|(name, spec)| service_entry(name, spec))
    .collect()
}

/// `count` connects to `to`, every one of which must reach one of `expected`; the replies
/// per name, and the peer each socket saw, which must be the address dialled.
fn reach(fx: &Fixture, to: &str, count: u32, expected: &[&str]) -> Vec<u64> {
    let dialled = addr(to);
    let report = connect_many(&fx.ns, Some(&fx.cgroup), dialled, count, DEADLINE).unwrap();
    assert_only(&report, expected);
    for outcome in &report.outcomes {
        let ConnectOutcome::Reached { peer, .. } = outcome else {
            unreachable!("assert_only saw no failure")
        };
        assert_eq!(*peer, dialled, "getpeername() of a connect to {to}");
    }
    counts(&report, expected)
}

#[test]
fn ranges_steer_every_address_and_the_most_specific_service_wins() {
    if !kernel_tests_enabled("ranges_steer_every_address_and_the_most_specific_service_wins") {
        return;
    }
    let fx = Fixture::new(&plan_from_yaml(&all_entries()));
    let _servers = fx.tcp_backends(&[E1, E2, E3, E9]);
    // Listeners at addresses of the ranges: reached only if the hook let the connect through.
    let _dialled = [
        "127.50.2.7:5432",
        "127.50.2.200:5432",
        "127.50.3.3:5432",
        "127.50.0.9:5433",
    ]
    .map(|a| Backend::tcp(&fx.ns, addr(a), a).unwrap());

    // Anywhere in the /16, first and last address included: the pool's endpoints, evenly.
    for to in [
        "127.50.0.0:5432",
        "127.50.200.17:5432",
        "127.50.255.255:5432",
    ] {
        let observed = reach(&fx, to, 400, &[E1, E2]);
        stats::assert_split(&observed, &[1.0, 1.0]).unwrap_or_else(|e| panic!("{to}: {e}"));
    }
    // The exact VIP inside it, and the longer range inside it.
    reach(&fx, "127.50.0.9:5432", 50, &[E9]);
    reach(&fx, "127.50.1.0:5432", 50, &[E3]);
    reach(&fx, "127.50.1.254:5432", 50, &[E3]);
    // The NONE range inside it: on to the address dialled.
    reach(&fx, "127.50.2.7:5432", 50, &["127.50.2.7:5432"]);
    reach(&fx, "127.50.2.200:5432", 50, &["127.50.2.200:5432"]);
    // Another port of a range address is no service.
    reach(&fx, "127.50.0.9:5433", 20, &["127.50.0.9:5433"]);

    let status = vsteer_datapath::status::read(fx.pins.path()).unwrap();
    let rendered = vsteer_datapath::status::render(&status);
    for service in [
        "127.50.0.0/16:5432/TCP",
        "127.50.1.0/24:5432/TCP",
        "127.50.2.0/24:5432/TCP",
        "127.50.0.9:5432/TCP",
    ] {
        assert!(rendered.contains(service), "{service} in\n{rendered}");
    }
    assert!(rendered.contains("(address dialled)"), "{rendered}");
}

#[test]
fn a_removed_range_stops_steering_and_an_added_one_starts() {
    if !kernel_tests_enabled("a_removed_range_stops_steering_and_an_added_one_starts") {
        return;
    }
    let fx = Fixture::new(&plan_from_yaml(&all_entries()));
    let _servers = fx.tcp_backends(&[E1, E2, E3]);
    let _dialled = Backend::tcp(&fx.ns, addr("127.50.1.5:5432"), "127.50.1.5:5432").unwrap();
    reach(&fx, "127.50.1.5:5432", 20, &[E3]);

    // A restarted agent adopts the ranges with the exact VIPs (else it could neither remove
    // them nor keep their slots).
    let mut fx = fx.restart(|_| {});
    assert_eq!(fx.datapath.adopted(), 4);
    reach(&fx, "127.50.1.5:5432", 20, &[E3]);

    // Without the /24, its addresses fall to the /16.
    let without_rack: String = [("pool", POOL), ("direct", DIRECT)]
        .iter()
        .map(|(name, spec)| service_entry(name, spec))
        .collect();
    fx.datapath.apply(&plan_from_yaml(&without_rack)).unwrap();
    reach(&fx, "127.50.1.5:5432", 100, &[E1, E2]);

    // Without any range, to the address dialled; the /24 back, to its endpoint again.
    fx.datapath
        .apply(&plan_from_yaml(&service_entry("pinned", PINNED)))
        .unwrap();
    reach(&fx, "127.50.1.5:5432", 20, &["127.50.1.5:5432"]);
    fx.datapath
        .apply(&plan_from_yaml(&service_entry("rack", RACK)))
        .unwrap();
    reach(&fx, "127.50.1.5:5432", 20, &[E3]);
    let status = vsteer_datapath::status::read(fx.pins.path()).unwrap();
    let services: Vec<&str> = status.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["127.50.1.0/24:5432/TCP"]);
}

/// Istio's egress pattern: 80% of the pool's connects to its endpoints, 20% on to the
/// address dialled (a route to a NONE host).
#[test]
fn a_split_between_endpoints_and_a_none_host_passes_chi_square() {
    if !kernel_tests_enabled("a_split_between_endpoints_and_a_none_host_passes_chi_square") {
        return;
    }
    let yaml = format!(
        "{}{}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: pool}}
spec:
  hosts: [pool.internal]
  tcp:
  - route:
    - {{destination: {{host: pool.internal}}, weight: 80}}
    - {{destination: {{host: direct.internal}}, weight: 20}}
",
        service_entry("pool", POOL),
        service_entry("direct", DIRECT)
    );
    let fx = Fixture::new(&plan_from_yaml(&yaml));
    let _servers = fx.tcp_backends(&[E1, E2]);
    let dialled = "127.50.3.3:5432";
    let _dialled = Backend::tcp(&fx.ns, addr(dialled), dialled).unwrap();
    let observed = reach(&fx, dialled, 10_000, &[E1, E2, dialled]);
    assert_eq!(observed.iter().sum::<u64>(), 10_000);
    stats::assert_split(&observed, &[40.0, 40.0, 20.0]).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn ipv6_ranges_steer_and_an_unserved_family_is_refused() {
    if !kernel_tests_enabled("ipv6_ranges_steer_and_an_unserved_family_is_refused") {
        return;
    }
    let yaml = service_entry(
        "web6",
        "  hosts: [web6.internal]
  addresses: ['fd00:50::/64', 127.60.0.0/16]
  ports: [{number: 8080, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: '::1', ports: {tcp: 18081}}
  - {address: '::1', ports: {tcp: 18082}}
",
    );
    let fx = Fixture::new(&plan_from_yaml(&yaml));
    let names = ["[::1]:18081", "[::1]:18082"];
    let _servers: Vec<Backend> = names
        .iter()
        .map(|a| Backend::tcp(&fx.ns, addr(a), a).unwrap())
        .collect();
    let observed = reach(&fx, "[fd00:50::1234:5678]:8080", 400, &names);
    stats::assert_split(&observed, &[1.0, 1.0]).unwrap();
    // The IPv4 range has no endpoint of its family: refused, not let through, as a
    // service without backends (a listener there proves the hook refused).
    let _sentinel = Backend::tcp(&fx.ns, addr("127.60.1.1:8080"), "let-through").unwrap();
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("127.60.1.1:8080"),
        10,
        DEADLINE,
    )
    .unwrap();
    assert_eq!(
        report.failures(),
        BTreeMap::from([(libc::ECONNREFUSED, 10)])
    );
}

/// An IPv6 range, even `::/0`, holds IPv6 addresses only: an IPv4 connect (whose key is
/// IPv4-mapped, inside `::/80` bitwise) is no service of it and goes on untouched. Here
/// the range has no IPv6 endpoint, so its own connects are refused: taking IPv4 ones would
/// refuse them too.
#[test]
fn an_ipv6_range_never_takes_ipv4_connects() {
    if !kernel_tests_enabled("an_ipv6_range_never_takes_ipv4_connects") {
        return;
    }
    let yaml = service_entry(
        "everything6",
        "  hosts: [everything6.internal]
  addresses: ['::/0']
  ports: [{number: 8080, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.2.1}
",
    );
    let fx = Fixture::new(&plan_from_yaml(&yaml));
    let report = connect_many(
        &fx.ns,
        Some(&fx.cgroup),
        addr("[fd00:61::1]:8080"),
        10,
        DEADLINE,
    )
    .unwrap();
    assert_eq!(
        report.failures(),
        BTreeMap::from([(libc::ECONNREFUSED, 10)]),
        "the IPv6 range is served (no backend of its family)"
    );
    let _untouched = Backend::tcp(&fx.ns, addr("127.61.0.1:8080"), "127.61.0.1:8080").unwrap();
    reach(&fx, "127.61.0.1:8080", 20, &["127.61.0.1:8080"]);
}

/// `loadBalancer.simple: PASSTHROUGH` (Envoy's ORIGINAL_DST cluster): a VIP's connects go
/// on to the VIP itself, not to the endpoints, which listen too.
#[test]
fn a_passthrough_load_balancer_lets_connects_reach_the_address_dialled() {
    if !kernel_tests_enabled("a_passthrough_load_balancer_lets_connects_reach_the_address_dialled")
    {
        return;
    }
    let yaml = format!(
        "{}{}",
        service_entry(
            "cache",
            "  hosts: [cache.internal]
  addresses: [127.62.0.1]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.2.1}
"
        ),
        resource(
            "DestinationRule",
            "cache",
            "  host: cache.internal
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
"
        )
    );
    let fx = Fixture::new(&plan_from_yaml(&yaml));
    let _endpoint = fx.tcp_backends(&[E1]);
    let dialled = "127.62.0.1:5432";
    let _vip = Backend::tcp(&fx.ns, addr(dialled), dialled).unwrap();
    reach(&fx, dialled, 50, &[dialled]);
}

/// One range more than `VSTEER_RANGES` holds: that one is refused with the limit named, the
/// others and an exact VIP are written, and the exact VIP still steers.
#[test]
fn a_full_range_map_refuses_one_range_and_keeps_the_rest() {
    if !kernel_tests_enabled("a_full_range_map_refuses_one_range_and_keeps_the_rest") {
        return;
    }
    let max = vsteer_common::MAX_RANGES as usize;
    let service = |key: ServiceKey| ServicePlan {
        key,
        host: "pool.internal".into(),
        resource: ResourceId::new(Kind::ServiceEntry, "default", "pool"),
        route: None,
        load_balancer: LoadBalancer::Random,
        backends: vec![BackendPlan {
            address: addr(E1).ip(),
            port: addr(E1).port(),
            weight: WEIGHT_SCALE,
            labels: vsteer_model::Labels::default(),
            subsets: Vec::new(),
        }],
        decision: Decision::Kernel,
        http: None,
    };
    let mut plan: Plan = (0..=max)
        .map(|i| {
            let net = format!("10.{}.{}.0/24", i / 256, i % 256);
            service(ServiceKey::range(net.parse().unwrap(), 5432, Protocol::Tcp))
        })
        .collect();
    let exact = service(ServiceKey::new(
        addr("127.50.0.9:5432").ip(),
        5432,
        Protocol::Tcp,
    ));
    plan.insert(exact);
    let mut fx = Fixture::new(&Plan::default());
    let stats = fx.datapath.apply(&plan).unwrap();
    assert_eq!(stats.added, max + 1, "{stats:?}");
    assert_eq!(stats.refused.len(), 1, "{:?}", stats.refused);
    assert!(
        stats.refused[0].limit.contains("the range map is full"),
        "{}",
        stats.refused[0]
    );
    let _servers = fx.tcp_backends(&[E1, E2]);
    reach(&fx, "127.50.0.9:5432", 20, &[E1]);

    // With the map as full as the agent fills it, a range's value is still flipped in
    // place (the trie keeps one entry spare for kernels that refuse that when full).
    let first = ServiceKey::range("10.0.0.0/24".parse().unwrap(), 5432, Protocol::Tcp);
    let mut moved = service(first);
    moved.backends[0].address = addr(E2).ip();
    plan.insert(moved);
    let stats = fx.datapath.apply(&plan).unwrap();
    assert_eq!(stats.changed, 1, "{stats:?}");
    reach(&fx, "10.0.0.77:5432", 20, &[E2]);
}
