//! The maps the agent fills and reads. BTF maps, so bpftool prints their keys and values by
//! field name; pinned by the agent so they outlive it.
use aya_ebpf::{
    btf_maps::{Array, HashMap, PerCpuHashMap},
    macros::btf_map,
};
use vsteer_common::{
    Address, MAX_BACKEND_SLOTS, MAX_COUNTERS, MAX_SERVICES, REVERSE_SLOTS, ReverseEntry,
    ServiceValue, Slot, VipKey,
};

/// VIP:port:protocol -> the service's current backend table.
#[btf_map]
pub static VSTEER_SERVICES: HashMap<VipKey, ServiceValue, { MAX_SERVICES as usize }> =
    HashMap::new();

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
