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
    /// VIP:port:protocol -> a [`ServiceHandle`](crate::ServiceHandle) naming its entry in
    /// [`ENTRIES`].
    pub const SERVICES: &str = "VSTEER_SERVICES";
    /// Exact services' [`ServiceEntry`](crate::ServiceEntry) values, each written once and
    /// left alone until a grace period after no handle names it.
    pub const ENTRIES: &str = "VSTEER_ENTRIES";
    pub const BACKENDS: &str = "VSTEER_BACKENDS";
    pub const COUNTERS: &str = "VSTEER_COUNTERS";
    pub const REVERSE: &str = "VSTEER_REVERSE";
    /// The proxy the connect hooks redirect to (one [`ProxyConfig`](crate::ProxyConfig)).
    /// Not pinned: it is the running agent's own (its proxy's address, its network
    /// namespace), written by every agent at start.
    pub const PROXY: &str = "VSTEER_PROXY";
    /// Socket-local storage of a redirected socket: the VIP it dialed (getpeername, sockops).
    pub const REDIRECTED: &str = "VSTEER_REDIRECTED";
    /// (client, proxy) of an established redirected connection -> the VIP it dialed: what the
    /// proxy and SO_ORIGINAL_DST read.
    pub const ORIGINAL: &str = "VSTEER_ORIGINAL";
    /// CIDR ranges of VIPs (a longest-prefix-match trie), consulted when an address is no
    /// exact VIP: same values as [`SERVICES`].
    pub const RANGES: &str = "VSTEER_RANGES";
    /// Socket-local storage of a steered UDP socket: its VIPs and their backends.
    pub const UDP_FLOWS: &str = "VSTEER_UDP_FLOWS";
    /// A map of maps read by no program, whose update waits for an RCU grace period (see
    /// the datapath's `grace`); [`GRACE_INNER`] is what is put in it. Not pinned: each
    /// agent waits on its own.
    pub const GRACE: &str = "VSTEER_GRACE";
    pub const GRACE_INNER: &str = "VSTEER_GRACE_IN";
    /// Every map whose state outlives an agent process (pinned, adopted on restart). The two
    /// redirect maps are among them so that connections made under one agent keep their
    /// original destination (and their VIP in getpeername) under the next.
    pub const PINNED: [&str; 9] = [
        SERVICES, ENTRIES, BACKENDS, COUNTERS, REVERSE, REDIRECTED, ORIGINAL, RANGES, UDP_FLOWS,
    ];
}

/// The layout of the pinned maps: their types, sizes, keys and values, and what the values
/// mean. Bump it whenever any of that changes for a map in [`map_names::PINNED`]: an agent
/// adopts only pins of its own layout (a marker directory in the pin directory says which).
/// 2: [`RangeKey::family`] (a zero byte in layout 1), one spare range entry, an unpreallocated
/// service map, [`ServiceValue::generation`] (a 16-byte value) and [`map_names::UDP_FLOWS`].
/// A layout-1 agent would misread all of it, and this one layout 1's: neither adopts the
/// other's pins.
/// 3: the service map holds a [`ServiceHandle`], the value is in [`map_names::ENTRIES`].
pub const MAP_LAYOUT: u32 = 3;

/// Capacity of the service map: one entry per VIP:port:protocol.
pub const MAX_SERVICES: u32 = 131_072;
/// Size of the service entry array: every exact service's entry, and as many again for
/// replaced entries during their grace period.
pub const MAX_ENTRIES: u32 = 2 * MAX_SERVICES;
/// Size of the backend slot array: the slots of every service's backend table together, with
/// room for replaced tables during their grace period.
pub const MAX_BACKEND_SLOTS: u32 = 524_288;
/// Capacity of the CIDR range trie: ServiceEntry ranges (each port and protocol its own).
pub const MAX_RANGES: u32 = 16_384;
/// Capacity of the per-backend connection counters.
pub const MAX_COUNTERS: u32 = 65_536;
/// Slots of the reverse translation (getpeername, UDP replies), a power of two: a
/// direct-mapped table, so a steered socket whose slot was since taken by another sees its
/// backend's address.
pub const REVERSE_SLOTS: u32 = 262_144;

/// Capacity of the original-destination map: established proxied connections on the node at
/// once (entries are deleted when the client's socket closes; memory is allocated per entry).
pub const MAX_ORIGINAL: u32 = 262_144;

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

/// A backend slot with this port stands for a refused share of a service (a route to a
/// subset that does not exist or has no endpoint: Envoy's 503): a connect that picks it fails
/// with `ECONNREFUSED`. No endpoint has port 0.
pub const REFUSED_PORT: u16 = 0;

/// With [`REFUSED_PORT`], the address of a passthrough slot (`::1`): a connect that picks it
/// goes on to the address it dialled, unchanged (Istio's `resolution: NONE`).
pub const PASSTHROUGH_ADDR: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Bits of `ServiceValue::flags`.
pub mod service_flags {
    /// Served by the agent's proxy: TCP connects are redirected to it (see
    /// [`ProxyConfig`](crate::ProxyConfig)); the backend table is the fallback for sockets
    /// that are not redirected (the proxy's own, or a netns that cannot reach the proxy).
    pub const PROXY: u8 = 1;
}

/// Bits of `ProxyConfig::flags`.
pub mod proxy_flags {
    /// `ProxyConfig::v4` is set: IPv4 VIPs are redirected to it.
    pub const V4: u32 = 1;
    /// `ProxyConfig::v6` is set: IPv6 VIPs are redirected to it.
    pub const V6: u32 = 2;
    /// `v4` is a loopback address: only sockets of the agent's network namespace reach it.
    pub const V4_LOOPBACK: u32 = 4;
    /// `v6` is a loopback address: as `V4_LOOPBACK`.
    pub const V6_LOOPBACK: u32 = 8;
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
    /// 0 for one address: every key of the service map, and every key a program looks up.
    /// Else the host bits of a CIDR range of [`map_names::RANGES`] (of the 128-bit address:
    /// an IPv4 `/16` has 16), whose key is [`VipKey::range_key`].
    pub host_bits: u8,
}

/// The data of a [`map_names::RANGES`] key: protocol, family and port first, so that a
/// prefix length of [`RANGE_FIXED_BITS`] + the address's prefix takes them whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RangeKey {
    pub proto: u8,
    /// [`RANGE_V4`] or [`RANGE_V6`]. IPv4 addresses are IPv4-mapped, so bitwise an IPv6
    /// range of `/80` or shorter (`::/0`) holds every IPv4 address: the family keeps them
    /// apart, as Envoy's prefix ranges are of one family.
    pub family: u8,
    /// Host byte order, as in [`VipKey`] (the trie matches all 16 bits, in either order).
    pub port: u16,
    pub addr: [u8; 16],
}

/// The bits of a [`RangeKey`] before its address.
pub const RANGE_FIXED_BITS: u32 = 32;
/// [`RangeKey::family`] of an IPv4 (IPv4-mapped) address or range.
pub const RANGE_V4: u8 = 4;
/// [`RangeKey::family`] of any other address or range.
pub const RANGE_V6: u8 = 6;

/// A [`map_names::RANGES`] key as the LPM trie takes it: a prefix length in bits, then the
/// data (the kernel's `struct bpf_lpm_trie_key`).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct RangeTrieKey {
    pub prefix_len: u32,
    pub data: RangeKey,
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
    /// [`service_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Changes with every table the agent writes: a UDP socket keeps its backend for a VIP
    /// while the service's `(first, slot_count, generation)` is the one it picked under (see
    /// [`UdpFlows`]). 32 bits, so that it does not come back within any socket's life.
    pub generation: u32,
}

/// A service map value: which [`ServiceEntry`] holds the service.
///
/// Why a handle and not the value itself: a hash map element replaced or deleted goes back
/// to its allocator at once (the preallocated free list, or bpf_mem_alloc, which reuses
/// freed elements before any grace period), so a connect that found the element a moment
/// earlier may read it while another service's update writes it. What it reads is then
/// checked: `check` fails for a half-written handle, and the entry it names carries its own
/// key, so another service's handle is recognised. An entry is never written while a
/// handle may name it (see the datapath's `service_maps`), so what passes both checks is a
/// whole value this service had.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceHandle {
    pub entry: u32,
    /// [`ServiceHandle::check_of`] of `entry`.
    pub check: u32,
}

impl ServiceHandle {
    pub const fn new(entry: u32) -> Self {
        Self {
            entry,
            check: Self::check_of(entry),
        }
    }

    /// A bijective mix (xor with a constant, times an odd constant): a handle stitched from
    /// two others' bytes passes with a chance of about 2^-32.
    pub const fn check_of(entry: u32) -> u32 {
        (entry ^ 0x5653_5445).wrapping_mul(0x9e37_79b1)
    }

    pub const fn is_whole(&self) -> bool {
        self.check == Self::check_of(self.entry)
    }
}

/// One element of [`map_names::ENTRIES`]: a service's value and the key it belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub key: VipKey,
    pub service: ServiceValue,
}

/// How many VIPs one UDP socket keeps a backend for (more: the oldest is picked anew).
pub const UDP_FLOWS: usize = 4;

/// One VIP a UDP socket sent to, the backend it keeps for it, and the service's table it was
/// picked from (`first`, `slot_count`, `generation` of its [`ServiceValue`]): a changed
/// table (a backend removed or added) makes the next datagram pick again.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFlow {
    pub vip: Address,
    pub backend: Address,
    pub first: u32,
    pub slot_count: u32,
    pub generation: u32,
    /// 0: an empty entry.
    pub used: u8,
    pub _pad: [u8; 3],
}

/// Per UDP socket (socket-local storage, freed with the socket): its flows, so that its
/// datagrams to one VIP all reach one backend (as Cilium by socket cookie, kube-proxy by
/// conntrack), and replies are shown from the VIP for the socket's whole life.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFlows {
    pub flows: [UdpFlow; UDP_FLOWS],
    /// The entry the next new VIP takes when all are used.
    pub next: u32,
    pub _pad: u32,
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

/// The agent's proxy, as the connect hooks need it (an array of one; all zero: no proxy).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where IPv4 VIPs go (when [`proxy_flags::V4`]).
    pub v4: Address,
    /// Where IPv6 VIPs go (when [`proxy_flags::V6`]).
    pub v6: Address,
    /// The agent's network namespace (SO_NETNS_COOKIE): the one netns where a loopback
    /// proxy address reaches the proxy.
    pub netns_cookie: u64,
    /// SO_MARK of the proxy's own sockets: never redirected.
    pub mark: u32,
    /// [`proxy_flags`] bits.
    pub flags: u32,
}

/// What a redirected socket carries (socket-local storage) from connect() to its
/// establishment and for getpeername(): the VIP it dialed and the proxy it was sent to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirected {
    pub vip: Address,
    pub proxy: Address,
}

/// An established redirected connection as both ends see it: the client's address and the
/// proxy's. Unique among live connections, so concurrent clients never share an entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OriginalKey {
    pub client: Address,
    pub proxy: Address,
}

impl Address {
    /// A passthrough slot's backend: the connect goes on to the address it dialled.
    #[inline(always)]
    pub fn is_passthrough(&self) -> bool {
        self.port == REFUSED_PORT && self.addr == PASSTHROUGH_ADDR
    }

    /// A refused share's backend: the connect fails with `ECONNREFUSED`.
    #[inline(always)]
    pub fn is_refused(&self) -> bool {
        self.port == REFUSED_PORT && self.addr != PASSTHROUGH_ADDR
    }
}

impl VipKey {
    /// Key for an IPv4 address given as its four bytes in network order.
    pub const fn v4(octets: [u8; 4], port: u16, proto: u8) -> Self {
        Self {
            addr: v4_mapped(octets),
            port,
            proto,
            host_bits: 0,
        }
    }

    /// The trie key of this range (or, with no host bits, of this one address as a lookup).
    pub const fn range_key(&self) -> RangeTrieKey {
        RangeTrieKey {
            prefix_len: RANGE_FIXED_BITS + 128 - self.host_bits as u32,
            data: RangeKey {
                proto: self.proto,
                family: if v4_unmapped(&self.addr).is_some() {
                    RANGE_V4
                } else {
                    RANGE_V6
                },
                port: self.port,
                addr: self.addr,
            },
        }
    }

    /// The range a trie key stands for.
    pub const fn from_range_key(key: &RangeTrieKey) -> Self {
        let data = key.data;
        let prefix_len = key.prefix_len;
        let bits = prefix_len.saturating_sub(RANGE_FIXED_BITS);
        Self {
            addr: data.addr,
            port: data.port,
            proto: data.proto,
            host_bits: if bits >= 128 { 0 } else { (128 - bits) as u8 },
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
    unsafe impl aya::Pod for super::ServiceHandle {}
    unsafe impl aya::Pod for super::ServiceEntry {}
    unsafe impl aya::Pod for super::Address {}
    unsafe impl aya::Pod for super::Slot {}
    unsafe impl aya::Pod for super::ReverseEntry {}
    unsafe impl aya::Pod for super::ProxyConfig {}
    unsafe impl aya::Pod for super::Redirected {}
    unsafe impl aya::Pod for super::OriginalKey {}
    unsafe impl aya::Pod for super::RangeKey {}
    unsafe impl aya::Pod for super::UdpFlows {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<ServiceValue>(), 16);
        assert_eq!(size_of::<ServiceHandle>(), 8);
        assert_eq!(size_of::<ServiceEntry>(), 36);
        assert_eq!(size_of::<UdpFlow>(), 56);
        assert_eq!(size_of::<UdpFlows>(), 4 * 56 + 8);
        assert_eq!(size_of::<Address>(), 20);
        assert_eq!(size_of::<Slot>(), 44);
        assert_eq!(size_of::<ReverseEntry>(), 56);
        assert_eq!(size_of::<ProxyConfig>(), 56);
        assert_eq!(core::mem::offset_of!(ProxyConfig, netns_cookie), 40);
        assert_eq!(size_of::<Redirected>(), 40);
        assert_eq!(size_of::<OriginalKey>(), 40);
        assert_eq!(core::mem::offset_of!(ServiceValue, flags), 9);
        assert_eq!(size_of::<RangeKey>(), 20);
        assert_eq!(size_of::<RangeTrieKey>(), 24);
    }

    #[test]
    fn range_keys_round_trip_and_take_the_fixed_fields_whole() {
        let mut range = VipKey::v4([10, 1, 0, 0], 80, PROTO_TCP);
        range.host_bits = 16;
        let key = range.range_key();
        let prefix_len = key.prefix_len;
        assert_eq!(prefix_len, 32 + 112);
        assert_eq!(VipKey::from_range_key(&key), range);
        let lookup = VipKey::v4([10, 1, 2, 3], 80, PROTO_TCP).range_key();
        let prefix_len = lookup.prefix_len;
        assert_eq!(prefix_len, 160);
        assert_eq!(lookup.data.family, RANGE_V4);
        assert_eq!(key.data.family, RANGE_V4);
    }

    #[test]
    fn an_ipv6_range_is_of_another_family_than_every_ipv4_lookup() {
        let everything = VipKey {
            addr: [0; 16],
            port: 80,
            proto: PROTO_TCP,
            host_bits: 128,
        };
        let range = everything.range_key();
        let lookup = VipKey::v4([10, 1, 2, 3], 80, PROTO_TCP).range_key();
        assert_eq!(range.data.family, RANGE_V6);
        // The fixed bits, which every range's prefix takes whole, differ.
        assert_ne!(range.data.family, lookup.data.family);
        assert_eq!(VipKey::from_range_key(&range), everything);
    }

    #[test]
    fn a_handle_checks_its_entry_and_a_stitched_one_fails() {
        let a = ServiceHandle::new(7);
        let b = ServiceHandle::new(70_000);
        assert!(a.is_whole() && b.is_whole());
        // Either half of one with the other half of the other.
        let stitched = [
            ServiceHandle {
                entry: a.entry,
                check: b.check,
            },
            ServiceHandle {
                entry: b.entry,
                check: a.check,
            },
            ServiceHandle {
                entry: (a.entry & 0xffff) | (b.entry & !0xffff),
                check: a.check,
            },
            ServiceHandle { entry: 0, check: 0 },
        ];
        for handle in stitched {
            assert!(!handle.is_whole(), "{handle:?}");
        }
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
