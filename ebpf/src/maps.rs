//! The maps the agent fills and reads. BTF maps, so bpftool prints their keys and values by
//! field name; pinned by the agent so they outlive it.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, ArrayOfMaps, HashMap, LpmTrie, PerCpuHashMap, SkStorage},
    macros::btf_map,
};
use vsteer_common::{
    Address, MAX_BACKEND_SLOTS, MAX_COUNTERS, MAX_ENTRIES, MAX_ORIGINAL, MAX_RANGES, MAX_SERVICES,
    OriginalKey, ProxyConfig, REVERSE_SLOTS, RangeKey, Redirected, ReverseEntry, ServiceEntry,
    ServiceHandle, ServiceValue, Slot, UdpFlows, VipKey,
};

/// VIP:port:protocol -> the handle of the service's entry in [`VSTEER_ENTRIES`]. Its
/// elements may be reused for another key under a reader (see `ServiceHandle`), which the
/// reader detects; allocated per element, as most nodes have far fewer services than room.
#[btf_map]
pub static VSTEER_SERVICES: HashMap<
    VipKey,
    ServiceHandle,
    { MAX_SERVICES as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Exact services' values with their keys. An array, written by the agent only into entries
/// no handle has named for a grace period, so a connect reads a stable entry.
#[btf_map]
pub static VSTEER_ENTRIES: Array<ServiceEntry, { MAX_ENTRIES as usize }> = Array::new();

/// (protocol, port, CIDR range of VIPs) -> the range's backend table: looked up only when
/// the address is no exact VIP, so exact services pay nothing for it. A trie node replaced
/// or deleted is freed after an RCU grace period (kfree_rcu, or bpf_mem_alloc's free_rcu),
/// never reused under a reader, so its value is read as it was written.
///
/// One entry more than the agent fills: before Linux 6.14 a full trie refuses to update even
/// a key it holds (`-ENOSPC`), and a range's value is flipped in place.
#[btf_map]
pub static VSTEER_RANGES: LpmTrie<RangeKey, ServiceValue, { MAX_RANGES as usize + 1 }> =
    LpmTrie::new();

/// Every service's backend slots, each service a contiguous range. An array: its lookup is
/// inlined by the verifier, a hash lookup is a function call and a hash.
#[btf_map]
pub static VSTEER_BACKENDS: Array<Slot, { MAX_BACKEND_SLOTS as usize }> = Array::new();

/// Backend -> connections (and UDP datagrams) sent to it, per CPU.
#[btf_map]
pub static VSTEER_COUNTERS: PerCpuHashMap<Address, u64, { MAX_COUNTERS as usize }> =
    PerCpuHashMap::new();

/// (socket, backend) -> the VIP the application addressed: for getpeername() and UDP replies.
/// A direct-mapped array: writing a slot is a plain store, where a hash map insert (with its
/// bucket lock and element allocation) cost several hundred ns per connect.
#[btf_map]
pub static VSTEER_REVERSE: Array<ReverseEntry, { REVERSE_SLOTS as usize }> = Array::new();

/// The agent's proxy, under key 0 (absent: no proxy). A hash map without preallocation
/// rather than an array: an update swaps in a whole new value (freed after an RCU grace
/// period), so a connect never reads half an old address and half a new one.
#[btf_map]
pub static VSTEER_PROXY: HashMap<u32, ProxyConfig, 1, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

/// Per redirected socket: the VIP it dialed and the proxy it went to. Lives and dies with
/// the socket, so concurrent clients cannot see each other's VIP and nothing leaks.
#[btf_map]
pub static VSTEER_REDIRECTED: SkStorage<Redirected> = SkStorage::new();

/// Per steered UDP socket: the backend it keeps for each VIP it sends to, and the VIPs its
/// replies are shown from. Lives and dies with the socket: nothing is overwritten by other
/// sockets' traffic, and nothing leaks after it closes.
#[btf_map]
pub static VSTEER_UDP_FLOWS: SkStorage<UdpFlows> = SkStorage::new();

/// (client, proxy) of an established redirected connection -> the VIP it dialed. Written by
/// sockops when the client's connection is established, deleted when that socket closes;
/// allocated per entry (no preallocation: the map is mostly empty).
#[btf_map]
pub static VSTEER_ORIGINAL: HashMap<
    OriginalKey,
    Address,
    { MAX_ORIGINAL as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Read by no program: the agent writes its one element to wait for an RCU grace period.
/// An update of a map of maps returns only once every program that was running has finished
/// (the kernel's `synchronize_rcu()` for these map types), so after it no connect still
/// holds a backend table it looked up before: its slots may be written again.
#[btf_map]
pub static VSTEER_GRACE: ArrayOfMaps<Array<u32, 1>, 1> = ArrayOfMaps::new();

/// What the agent puts into [`VSTEER_GRACE`] (the element's value is never read).
#[btf_map]
pub static VSTEER_GRACE_IN: Array<u32, 1> = Array::new();
