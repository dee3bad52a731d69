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
}

/// Capacity of the service map: one entry per VIP:port:protocol.
pub const MAX_SERVICES: u32 = 131_072;
/// Capacity of the backend map: the slots of every service's backend table together.
pub const MAX_BACKEND_SLOTS: u32 = 524_288;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A virtual service address as the socket layer sees it.
///
/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so one map serves both families.
/// `addr` is in network byte order (the bytes as on the wire); `port` is in host byte order
/// so `bpftool map dump` shows the port a human expects.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Where a service's backends are: `slot_count` consecutive slots of backend table `table`.
///
/// A service switches to a new backend set by writing a new table and then flipping this one
/// value, so a connect never sees a half-written set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceValue {
    pub table: u32,
    pub slot_count: u32,
}

/// Key of one slot of a backend table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub table: u32,
    pub slot: u32,
}

/// A backend address: where a connect to the service is sent. Same byte orders as
/// [`ServiceKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

impl ServiceKey {
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
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::BackendKey {}
    unsafe impl aya::Pod for super::Backend {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<ServiceValue>(), 8);
        assert_eq!(size_of::<BackendKey>(), 8);
        assert_eq!(size_of::<Backend>(), 20);
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
