//! Kernel tests of how the datapath replaces what connects read: a connect never uses what
//! it read from a service map element reused under it (another service's handle, or a
//! half-written one), and the slots of a replaced backend table are reused once the kernel has waited for every
//! running program (at the very next change, no timer).
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::net::{IpAddr, Ipv4Addr};

use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData, MapInfo};
use support::{Fixture, addr, counts};
use vsteer_common::{PROTO_TCP, ServiceEntry, ServiceHandle, VipKey, map_names};
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::{connect_many, kernel_tests_enabled};

const DEADLINE: Duration = Duration::from_secs(60);

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
        "VSTEER_SERVICES is preallocated"
    );
}

const A_BACKEND: &str = "127.0.1.1:80";
const B_BACKEND: &str = "127.0.1.2:80";

/// A service map element may be reused for another key while a connect reads it (the
/// kernel's hash maps hand a replaced element to the next update before any grace period).
/// What such a connect reads is put under A's key here: B's handle, then a half-written
/// handle naming an entry that claims A but holds B's table (an entry being written). A's
/// connects must use neither; with A's handle back, they reach A's backend again.
#[test]
fn a_connect_never_uses_a_handle_read_from_a_reused_element() {
    if !kernel_tests_enabled("a_connect_never_uses_a_handle_read_from_a_reused_element") {
        return;
    }
    let one = |n: u8, backend: [u8; 4]| big_service(n, 1, u32::from(Ipv4Addr::from(backend)));
    let plan: Plan = [one(1, [127, 0, 1, 1]), one(2, [127, 0, 1, 2])]
        .into_iter()
        .collect();
    let fx = Fixture::new(&plan);
    let _servers = fx.tcp_backends(&[A_BACKEND, B_BACKEND]);
    let a_vip = addr("127.70.0.1:80");
    let connect_a = || connect_many(&fx.ns, Some(&fx.cgroup), a_vip, 40, DEADLINE).unwrap();
    assert_eq!(counts(&connect_a(), &[A_BACKEND, B_BACKEND]), [40, 0]);

    let mut services: HashMap<MapData, VipKey, ServiceHandle> =
        HashMap::try_from(open(&fx, map_names::SERVICES)).unwrap();
    let mut entries: Array<MapData, ServiceEntry> =
        Array::try_from(open(&fx, map_names::ENTRIES)).unwrap();
    let a_key = VipKey::v4([127, 70, 0, 1], 80, PROTO_TCP);
    let b_key = VipKey::v4([127, 70, 0, 2], 80, PROTO_TCP);
    let a_handle = services.get(&a_key, 0).unwrap();
    let b_handle = services.get(&b_key, 0).unwrap();
    let b_entry = entries.get(&b_handle.entry, 0).unwrap();

    // A's connects with `handle` under A's key reach no backend.
    let mut unused_under_a = |handle: ServiceHandle, what: &str| {
        services.insert(a_key, handle, 0).unwrap();
        let report = connect_a();
        assert!(
            report.replies().is_empty(),
            "A's connects used {what}: {:?}",
            report.replies()
        );
    };

    // Another service's handle: its entry names B, so A's connect does not take it.
    unused_under_a(b_handle, "B's handle");

    // A half-written handle: its check fails, so the entry it names (A's key, B's table,
    // as an entry caught mid-write would read) is not used either.
    let unused = vsteer_common::MAX_ENTRIES - 1;
    entries
        .set(
            unused,
            ServiceEntry {
                key: a_key,
                service: b_entry.service,
            },
            0,
        )
        .unwrap();
    let torn = ServiceHandle {
        entry: unused,
        check: ServiceHandle::check_of(unused) ^ 1,
    };
    unused_under_a(torn, "a half-written handle");

    services.insert(a_key, a_handle, 0).unwrap();
    assert_eq!(counts(&connect_a(), &[A_BACKEND, B_BACKEND]), [40, 0]);
}

fn open(fx: &Fixture, name: &str) -> Map {
    Map::from_map_data(MapData::from_pin(fx.pins.path().join(name)).unwrap()).unwrap()
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
