//! Backend selection for one new connection (or one unconnected UDP datagram).
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::programs::SockAddrContext;
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_netns_cookie, bpf_get_prandom_u32},
};
use vsteer_common::{Address, PROTO_TCP, PROTO_UDP, ServiceValue, VipKey, mode, service_flags};

use crate::{
    maps::{VSTEER_BACKENDS, VSTEER_COUNTERS, VSTEER_ENTRIES, VSTEER_RANGES, VSTEER_SERVICES},
    redirect, udp_flows,
};

pub enum Choice {
    /// Not a service: leave the socket call alone.
    NotAService,
    /// A service with no backend: fail the call.
    NoBackend,
    Backend(Address),
    /// A proxied service: to the agent's proxy (the VIP is recorded on the socket).
    Proxy(Address),
}

#[inline(always)]
pub fn choose(ctx: &SockAddrContext, key: &VipKey) -> Choice {
    let Some(service) = lookup(key) else {
        return Choice::NotAService;
    };
    // A kernel-path service pays one test of a byte it already has. Only TCP is proxied, and
    // connect is the one TCP hook that steers.
    if service.flags & service_flags::PROXY != 0
        && key.proto == PROTO_TCP
        && let Some(proxy) = redirect::to_proxy(
            ctx,
            &Address {
                addr: key.addr,
                port: key.port,
                _pad: 0,
            },
        )
    {
        return Choice::Proxy(proxy);
    }
    if service.slot_count == 0 {
        return Choice::NoBackend;
    }
    let udp = key.proto == PROTO_UDP;
    let vip = Address {
        addr: key.addr,
        port: key.port,
        _pad: 0,
    };
    if udp && let Some(backend) = udp_flows::kept(ctx, &vip, &service) {
        count(&backend);
        return Choice::Backend(backend);
    }
    let hash = if service.mode == mode::SOURCE_HASH {
        // One network namespace is one pod, i.e. one client IP: hash it so a client keeps
        // its backend while the set is unchanged.
        mix(unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }) as u32
    } else {
        unsafe { bpf_get_prandom_u32() }
    };
    // Multiply-shift maps a uniform u32 onto [0, slot_count) without a division.
    let slot = ((u64::from(hash) * u64::from(service.slot_count)) >> 32) as u32;
    let index = service.first.wrapping_add(slot);
    let Some(slot) = VSTEER_BACKENDS.get(index).copied() else {
        // Out of the array: a corrupt entry; let the call through unsteered.
        return Choice::NotAService;
    };
    let backend = if slot.threshold == u32::MAX || unsafe { bpf_get_prandom_u32() } < slot.threshold
    {
        slot.primary
    } else {
        slot.alias
    };
    count(&backend);
    // A refused share is drawn again by the next datagram, as Envoy answers each request
    // anew; a passthrough one is kept like a backend.
    if udp && !backend.is_refused() {
        udp_flows::keep(ctx, &vip, &backend, &service);
    }
    Choice::Backend(backend)
}

/// The service of `key`: its exact VIP, else the longest CIDR range holding it.
#[inline(always)]
fn lookup(key: &VipKey) -> Option<ServiceValue> {
    if let Some(service) = exact(key) {
        return Some(service);
    }
    let range = key.range_key();
    VSTEER_RANGES
        .get(&Key::new(range.prefix_len, range.data))
        .copied()
}

/// The exact service of `key`. A handle that fails its checks was read from an element
/// reused for another key a moment ago: the next lookup finds the key's current element.
#[inline(always)]
fn exact(key: &VipKey) -> Option<ServiceValue> {
    for _ in 0..2 {
        // SAFETY: the handle is copied out at once; what it says is checked below.
        let handle = unsafe { *VSTEER_SERVICES.get(key)? };
        if !handle.is_whole() {
            continue;
        }
        let Some(entry) = VSTEER_ENTRIES.get(handle.entry) else {
            continue;
        };
        if entry.key == *key {
            return Some(entry.service);
        }
    }
    None
}

#[inline(always)]
fn count(backend: &Address) {
    match VSTEER_COUNTERS.get_ptr_mut(backend) {
        // SAFETY: a per-CPU slot: only this CPU writes it while this program runs.
        Some(counter) => unsafe { *counter += 1 },
        None => {
            // First connection to this backend; another CPU may race us to create it.
            let _ = VSTEER_COUNTERS.insert(backend, 1u64, 0);
        }
    }
}

/// splitmix64's finaliser: spreads cookie bits over the whole word.
#[inline(always)]
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
