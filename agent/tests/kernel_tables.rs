//! Kernel tests of how the datapath replaces what connects read: the service map frees a
//! replaced element only after an RCU grace period (no preallocation), the slots of a
//! replaced backend table are reused once the kernel has waited for every running program
//! (at the very next change, no timer), and pins of map layout 1 are upgraded with every
//! service carried into the new maps before the new programs run.
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::MapInfo;
use support::{Fixture, addr, assert_only, plan_from_yaml, resource};
use vsteer_common::map_names;
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::{connect_many, kernel_tests_enabled};

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The kernel's flag for a hash map that allocates each element (and frees it after an RCU
/// grace period) instead of taking it from a preallocated free list.
const BPF_F_NO_PREALLOC: u32 = 1;

#[test]
fn the_service_map_frees_replaced_elements_only_after_a_grace_period() {
    if !kernel_tests_enabled("the_service_map_frees_replaced_elements_only_after_a_grace_period") {
        return;
    }
    let fx = Fixture::new(&Plan::default());
    let info = MapInfo::from_pin(fx.pins.path().join(map_names::SERVICES)).unwrap();
    assert_ne!(
        info.map_flags() & BPF_F_NO_PREALLOC,
        0,
        "VSTEER_SERVICES is preallocated: a replaced element is reused under readers"
    );
}

/// A service at 127.70.0.1:80 (`n`th of the test) with `count` backends from `base`.
fn big_service(n: u8, count: u32, base: u32) -> ServicePlan {
    let backends = (0..count)
        .map(|i| BackendPlan {
            address: IpAddr::V4(Ipv4Addr::from(base + i)),
            port: 80,
            weight: WEIGHT_SCALE / count,
            labels: vsteer_model::Labels::default(),
            subsets: Vec::new(),
        })
        .collect();
    ServicePlan {
        key: ServiceKey::new(IpAddr::V4(Ipv4Addr::new(127, 70, 0, n)), 80, Protocol::Tcp),
        host: format!("big{n}.internal").into(),
        resource: ResourceId::new(Kind::ServiceEntry, "default", &format!("big{n}")),
        route: None,
        load_balancer: LoadBalancer::Random,
        backends,
        decision: Decision::Kernel,
        http: None,
    }
}

/// With the slot array nearly full, a table replaced by one change is room for the next
/// change at once: the agent waits for a grace period the kernel guarantees (an update of a
/// map of maps returns after every running program), not for a timer, before reusing it.
#[test]
fn replaced_slots_are_room_for_the_very_next_change() {
    if !kernel_tests_enabled("replaced_slots_are_room_for_the_very_next_change") {
        return;
    }
    const A: u32 = 100_000;
    const B: u32 = 250_000;
    let ten = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let plan_with = |a_base: u32| -> Plan {
        [
            big_service(1, A, a_base),
            big_service(2, B, ten + 1_000_000),
        ]
        .into_iter()
        .collect()
    };
    // A and B take 350,000 of the 524,288 slots.
    let mut fx = Fixture::new(&plan_with(ten));
    // A moves to 100,000 fresh slots; its old ones are retired: 74,288 free.
    let stats = fx.datapath.apply(&plan_with(ten + 200_000)).unwrap();
    assert_eq!((stats.changed, stats.refused.len()), (1, 0), "{stats:?}");
    // At once, A again: only the slots just retired can hold it.
    let stats = fx.datapath.apply(&plan_with(ten + 400_000)).unwrap();
    assert!(
        stats.refused.is_empty(),
        "the retired slots were not reused: {}",
        stats.refused[0]
    );
    assert_eq!(stats.changed, 1, "{stats:?}");
    let status = vsteer_datapath::status::read(fx.pins.path()).unwrap();
    let a = status
        .iter()
        .find(|s| s.service == "127.70.0.1:80/TCP")
        .unwrap();
    assert_eq!(
        a.first, 0,
        "A was written into the slots it left two changes ago"
    );
    assert!(
        a.backends.iter().any(|(b, _, _)| b == "10.6.26.128:80"),
        "{:?}",
        &a.backends[..3]
    );
}

/// A VIP and a range, each with one endpoint.
fn services() -> String {
    let entry = |name: &str, address: &str, endpoint: &str| {
        resource(
            "ServiceEntry",
            name,
            &format!(
                "  hosts: [{name}.internal]
  addresses: [{address}]
  ports: [{{number: 5432, name: tcp-pg, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: {endpoint}}}]
"
            ),
        )
    };
    format!(
        "{}{}",
        entry("exact", "127.71.0.1", "127.0.3.1"),
        entry("pool", "127.72.0.0/16", "127.0.3.2")
    )
}

/// Pins of layout 1: the service and range maps are made anew (the service map was
/// preallocated, the range keys had no family), and every service they held is written into
/// the new ones before the new programs are attached, so connects are steered with no apply.
#[test]
fn layout_1_pins_are_upgraded_with_every_service_carried() {
    if !kernel_tests_enabled("layout_1_pins_are_upgraded_with_every_service_carried") {
        return;
    }
    let fx = Fixture::new(&plan_from_yaml(&services()));
    let pin = |name: &str| fx.pins.path().join(name);
    let old_id = MapInfo::from_pin(pin(map_names::SERVICES)).unwrap().id();
    let fx = fx.restart(|pins| {
        std::fs::rename(pins.join("layout-v2"), pins.join("layout-v1")).unwrap();
    });
    assert_eq!(fx.datapath.adopted(), 2, "both services carried");
    let pin = |name: &str| fx.pins.path().join(name);
    assert!(pin("layout-v2").is_dir() && !pin("layout-v1").exists());
    assert_ne!(
        MapInfo::from_pin(pin(map_names::SERVICES)).unwrap().id(),
        old_id,
        "the service map was made anew"
    );
    let _servers = fx.tcp_backends(&["127.0.3.1:5432", "127.0.3.2:5432"]);
    for (to, expected) in [
        ("127.71.0.1:5432", "127.0.3.1:5432"),
        ("127.72.9.9:5432", "127.0.3.2:5432"),
    ] {
        let report = connect_many(&fx.ns, Some(&fx.cgroup), addr(to), 20, DEADLINE).unwrap();
        assert_only(&report, &[expected]);
    }
}
