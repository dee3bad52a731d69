//! The maps the agent fills. BTF maps, so bpftool prints their keys and values by field name.
use aya_ebpf::{btf_maps::HashMap, macros::btf_map};
use vsteer_common::{
    Backend, BackendKey, MAX_BACKEND_SLOTS, MAX_SERVICES, ServiceKey, ServiceValue,
};

/// VIP:port:protocol -> the service's current backend table.
#[btf_map]
pub static VSTEER_SERVICES: HashMap<ServiceKey, ServiceValue, { MAX_SERVICES as usize }> =
    HashMap::new();

/// (table, slot) -> backend address.
#[btf_map]
pub static VSTEER_BACKENDS: HashMap<BackendKey, Backend, { MAX_BACKEND_SLOTS as usize }> =
    HashMap::new();
