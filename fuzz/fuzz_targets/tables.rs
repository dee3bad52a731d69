//! The map layout round trip: a planned service's backends (any count, any weights summing
//! to the plan's scale, as the compiler makes them) become the slots the kernel picks from;
//! read back as shares, weighted random must give every backend its planned share (exact to
//! 2^-32 per slot), and a consistent-hash table must hold only the planned backends.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vsteer_datapath::{address, shares, table_spec};
use vsteer_model::{Kind, Labels, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Up to 64 backends, each a distinct address with a raw weight from two bytes.
    let raw: Vec<u64> = rest
        .chunks_exact(2)
        .take(64)
        .map(|w| u64::from(u16::from_le_bytes([w[0], w[1]])))
        .filter(|w| *w > 0)
        .collect();
    let total: u64 = raw.iter().sum();
    if total == 0 {
        return;
    }
    // Scaled to WEIGHT_SCALE, the remainder to the first, as the compiler does; weights
    // that round to 0 are left out, as the plan does.
    let scale = u64::from(WEIGHT_SCALE);
    let mut weights: Vec<u32> = raw
        .iter()
        .map(|w| u32::try_from(w * scale / total).unwrap_or(0))
        .collect();
    let sum: u32 = weights.iter().sum();
    weights[0] += WEIGHT_SCALE - sum;
    let backends: Vec<BackendPlan> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, w)| BackendPlan {
            address: IpAddr::V4(Ipv4Addr::new(127, 0, 1, i as u8 + 1)),
            port: 8080,
            weight: *w,
            labels: Labels::default(),
            subsets: Vec::<Arc<str>>::new(),
        })
        .collect();
    let load_balancer = if mode & 1 == 0 {
        LoadBalancer::Random
    } else {
        LoadBalancer::SourceIpHash
    };
    let service = ServicePlan {
        key: ServiceKey::new(IpAddr::V4(Ipv4Addr::new(127, 100, 0, 1)), 80, Protocol::Tcp),
        host: "fuzz.example.com".into(),
        resource: ResourceId::new(Kind::ServiceEntry, "default", "fuzz"),
        route: None,
        load_balancer,
        backends: backends.clone(),
        decision: Decision::Kernel,
        http: None,
    };
    let spec = table_spec(&service);
    assert!(!spec.slots.is_empty());
    let planned: Vec<_> = backends
        .iter()
        .map(|b| address(b.address, b.port))
        .collect();
    for slot in &spec.slots {
        assert!(
            planned.contains(&slot.primary),
            "a slot names an unplanned backend"
        );
        assert!(
            planned.contains(&slot.alias),
            "a slot names an unplanned backend"
        );
    }
    if load_balancer == LoadBalancer::Random {
        let got = shares(&spec);
        let tolerance = spec.slots.len() as f64 * 2f64.powi(-32) + 1e-12;
        for backend in &backends {
            let want = f64::from(backend.weight) / f64::from(WEIGHT_SCALE);
            let share = got
                .iter()
                .find(|(a, _)| *a == address(backend.address, backend.port))
                .map_or(0.0, |(_, s)| *s);
            assert!(
                (share - want).abs() <= tolerance.max(want * 1e-9),
                "backend {} planned {want}, gets {share}",
                backend.address
            );
        }
    }
});
