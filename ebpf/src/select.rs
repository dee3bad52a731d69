//! Backend selection for one new connection.
use aya_ebpf::helpers::bpf_get_prandom_u32;
use vsteer_common::{Backend, BackendKey, ServiceKey};

use crate::maps::{VSTEER_BACKENDS, VSTEER_SERVICES};

/// The backend a new connection to `key` goes to, or `None` when `key` is no service.
#[inline(always)]
pub fn backend_for(key: &ServiceKey) -> Option<Backend> {
    // SAFETY: values are copied out at once; the agent replaces tables instead of editing
    // them in place, so a copy is always a consistent value.
    let service = unsafe { VSTEER_SERVICES.get(key) }.copied()?;
    if service.slot_count == 0 {
        return None;
    }
    // Multiply-shift maps a uniform u32 onto [0, slot_count) without a division.
    let random = unsafe { bpf_get_prandom_u32() };
    let slot = ((u64::from(random) * u64::from(service.slot_count)) >> 32) as u32;
    let slot_key = BackendKey {
        table: service.table,
        slot,
    };
    unsafe { VSTEER_BACKENDS.get(slot_key) }.copied()
}
