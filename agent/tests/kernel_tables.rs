//! Kernel tests of how the datapath replaces what connects read: the service map is not
//! preallocated (whose free list hands a replaced element to the next update at once), and
//! the slots of a replaced backend table are reused once the kernel has waited for every
//! running program (at the very next change, no timer).
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::MapInfo;
use support::Fixture;
use vsteer_common::map_names;
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::kernel_tests_enabled;

/// The kernel's flag for a hash map that allocates each element (and frees it after an RCU
/// grace period) instead of taking it from a preallocated free list.
const BPF_F_NO_PREALLOC: u32 = 1;

#[test]
fn the_service_map_is_not_preallocated() {
    if !kernel_tests_enabled("the_service_map_is_not_preallocated") {
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
