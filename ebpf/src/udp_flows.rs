//! UDP sockets keep their backend: a socket's datagrams to one VIP all reach the backend its
//! first one did while the service's table stays the same (a protocol with state on the
//! server, QUIC, DTLS, a DNS client's retry, needs one server), and a reply from that
//! backend is shown from the VIP for the socket's whole life. Socket-local storage, created
//! by the first datagram (or connect) to a UDP service, freed with the socket.
use aya_ebpf::programs::SockAddrContext;
use vsteer_common::{Address, ServiceValue, UDP_FLOWS, UdpFlow, UdpFlows};

use crate::maps::VSTEER_UDP_FLOWS;

/// The backend the socket of `ctx` keeps for `vip` of `service`, when it has one for the
/// service's current table.
#[inline(always)]
pub fn kept(ctx: &SockAddrContext, vip: &Address, service: &ServiceValue) -> Option<Address> {
    // SAFETY: a lookup without creation on the program's own socket.
    let flows = unsafe { VSTEER_UDP_FLOWS.get_ptr_mut(ctx) };
    if flows.is_null() {
        return None;
    }
    // SAFETY: non-null: this socket's storage; the kernel serialises calls per socket.
    let flows = unsafe { &*flows };
    for flow in &flows.flows {
        if flow.used != 0
            && flow.vip == *vip
            && flow.first == service.first
            && flow.slot_count == service.slot_count
            && flow.generation == service.generation
        {
            return Some(flow.backend);
        }
    }
    None
}

/// Records that the socket of `ctx` keeps `backend` for `vip` of `service`: in the entry
/// `vip` had, else a free one, else the oldest. `false` when the socket has no storage
/// (the kernel could not allocate it): the caller falls back to the shared table.
#[inline(always)]
pub fn keep(
    ctx: &SockAddrContext,
    vip: &Address,
    backend: &Address,
    service: &ServiceValue,
) -> bool {
    // SAFETY: the storage of the program's own socket, created zeroed when absent.
    let flows = unsafe { VSTEER_UDP_FLOWS.get_or_insert_ptr_mut(ctx, None) };
    if flows.is_null() {
        return false;
    }
    // SAFETY: non-null: this socket's storage; the kernel serialises calls per socket.
    let flows: &mut UdpFlows = unsafe { &mut *flows };
    let mut at = UDP_FLOWS;
    for (i, flow) in flows.flows.iter().enumerate() {
        if flow.used != 0 && flow.vip == *vip {
            at = i;
            break;
        }
    }
    if at == UDP_FLOWS {
        for (i, flow) in flows.flows.iter().enumerate() {
            if flow.used == 0 {
                at = i;
                break;
            }
        }
    }
    if at == UDP_FLOWS {
        at = flows.next as usize % UDP_FLOWS;
        flows.next = flows.next.wrapping_add(1);
    }
    if let Some(flow) = flows.flows.get_mut(at) {
        *flow = UdpFlow {
            vip: *vip,
            backend: *backend,
            first: service.first,
            slot_count: service.slot_count,
            generation: service.generation,
            used: 1,
            _pad: [0; 3],
        };
    }
    true
}

/// The VIP the socket of `ctx` sent to when it reached `backend`, if it is a UDP socket
/// that did.
#[inline(always)]
pub fn vip_of(ctx: &SockAddrContext, backend: &Address) -> Option<Address> {
    // SAFETY: a lookup without creation on the program's own socket.
    let flows = unsafe { VSTEER_UDP_FLOWS.get_ptr_mut(ctx) };
    if flows.is_null() {
        return None;
    }
    // SAFETY: as in `kept`.
    let flows = unsafe { &*flows };
    for flow in &flows.flows {
        if flow.used != 0 && flow.backend == *backend {
            return Some(flow.vip);
        }
    }
    None
}
