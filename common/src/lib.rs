//! Map keys and values shared by vsteer's kernel programs and its agent.
//!
//! Every type is `repr(C)` with explicit padding so both sides agree on the layout and
//! `bpftool map dump` can print the fields by name from BTF.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod mountinfo;

/// Names of the maps, as the agent finds them in the object and pins them in bpffs.
pub mod map_names {
    pub const SERVICES: &str = "VSTEER_SERVICES";
    pub const BACKENDS: &str = "VSTEER_BACKENDS";
    pub const COUNTERS: &str = "VSTEER_COUNTERS";
    pub const REVERSE: &str = "VSTEER_REVERSE";
    /// Every map whose state outlives an agent process (pinned, adopted on restart).
    pub const PINNED: [&str; 4] = [SERVICES, BACKENDS, COUNTERS, REVERSE];
}

/// Capacity of the service map: one entry per VIP:port:protocol.
pub const MAX_SERVICES: u32 = 131_072;
/// Size of the backend slot array: the slots of every service's backend table together, with
/// room for replaced tables during their grace period.
pub const MAX_BACKEND_SLOTS: u32 = 524_288;
/// Capacity of the per-backend connection counters.
pub const MAX_COUNTERS: u32 = 65_536;
/// Slots of the reverse translation (getpeername, UDP replies), a power of two: a
/// direct-mapped table, so a steered socket whose slot was since taken by another sees its
/// backend's address.
pub const REVERSE_SLOTS: u32 = 262_144;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// How a service's slot is chosen (`ServiceValue::mode`).
pub mod mode {
    /// Weighted random: uniform slot, then the slot's primary or alias by its threshold
    /// (Walker's alias method: O(1) for any weights).
    pub const WEIGHTED: u8 = 0;
    /// Consistent hash of the client (its network namespace): slot = hash % slot_count of a
    /// Maglev table, so one client stays on one backend while the set is unchanged.
    pub const SOURCE_HASH: u8 = 1;
}

/// A virtual service address as the socket layer sees it.
///
/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so one map serves both families
/// (and dual-stack IPv6 sockets dialing IPv4 VIPs find them too). `addr` is in network byte
/// order (the bytes as on the wire); `port` is in host byte order so `bpftool map dump`
/// shows the port a human expects.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Where a service's backends are: slots `first .. first + slot_count` of the backend slot
/// array, chosen by `mode`. `slot_count == 0` means the service has no backend: connects are
/// refused.
///
/// A service switches to a new backend set by writing new slots elsewhere in the array and
/// then flipping this one value, so a connect never sees a half-written set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceValue {
    pub first: u32,
    pub slot_count: u32,
    pub mode: u8,
    pub _pad: [u8; 3],
}

/// A socket address (a backend, or a VIP to restore). Same byte orders as [`VipKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

/// One slot of a backend table: `primary` when a fresh random u32 is below `threshold`, else
/// `alias`. Both addresses sit in the slot so a connect needs one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub threshold: u32,
    pub primary: Address,
    pub alias: Address,
}

/// One slot of the reverse translation: socket `cookie` talking to `backend` addressed `vip`.
/// `check` mixes the other fields: a slot read while another CPU rewrites it fails the check
/// and counts as empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReverseEntry {
    pub cookie: u64,
    pub backend: Address,
    pub vip: Address,
    pub check: u32,
    pub _pad: u32,
}

impl VipKey {
    /// Key for an IPv4 address given as its four bytes in network order.
    pub const fn v4(octets: [u8; 4], port: u16, proto: u8) -> Self {
        Self {
            addr: v4_mapped(octets),
            port,
            proto,
            _pad: 0,
        }
    }
}

/// The IPv4-mapped IPv6 form of an IPv4 address.
pub const fn v4_mapped(o: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3],
    ]
}

/// The IPv4 address inside an IPv4-mapped address, if it is one.
pub const fn v4_unmapped(a: &[u8; 16]) -> Option<[u8; 4]> {
    if a[0] == 0
        && a[1] == 0
        && a[2] == 0
        && a[3] == 0
        && a[4] == 0
        && a[5] == 0
        && a[6] == 0
        && a[7] == 0
        && a[8] == 0
        && a[9] == 0
        && a[10] == 0xff
        && a[11] == 0xff
    {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain repr(C) structs of integers with explicit padding fields, no implicit padding.
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::Address {}
    unsafe impl aya::Pod for super::Slot {}
    unsafe impl aya::Pod for super::ReverseEntry {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<ServiceValue>(), 12);
        assert_eq!(size_of::<Address>(), 20);
        assert_eq!(size_of::<Slot>(), 44);
        assert_eq!(size_of::<ReverseEntry>(), 56);
    }

    #[test]
    fn v4_mapping_round_trips() {
        let mapped = v4_mapped([127, 100, 0, 1]);
        assert_eq!(v4_unmapped(&mapped), Some([127, 100, 0, 1]));
        let mut v6 = mapped;
        v6[0] = 0xfd;
        assert_eq!(v4_unmapped(&v6), None);
    }
}
