//! The reverse translation: which VIP a steered socket addressed, so that getpeername() and
//! UDP replies show it instead of the backend. A UDP socket carries it in its own flows
//! (`udp_flows`); a TCP socket's is in a direct-mapped table indexed by a hash of (socket,
//! backend): one plain store per steered connect, one load per lookup, and a later entry
//! may overwrite it (socket storage for TCP measured +470 ns per connect: not taken).
use aya_ebpf::{EbpfContext, helpers::bpf_get_socket_cookie};
use vsteer_common::{Address, REVERSE_SLOTS, ReverseEntry};

use crate::{maps::VSTEER_REVERSE, select::mix};

/// Records that the socket of `ctx`, now talking to `backend`, addressed `vip`.
#[inline(always)]
pub fn remember<C: EbpfContext>(ctx: &C, backend: &Address, vip: &Address) {
    // SAFETY: plain helper call on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let entry = ReverseEntry {
        cookie,
        backend: *backend,
        vip: *vip,
        check: check(cookie, backend, vip),
        _pad: 0,
    };
    if let Some(slot) = VSTEER_REVERSE.get_ptr_mut(index(cookie, backend)) {
        // SAFETY: a valid slot of the array; a concurrent reader that sees a half-written
        // entry fails its check.
        unsafe { *slot = entry };
    }
}

/// The VIP the socket of `ctx` addressed when it was sent to `backend`, if still recorded.
#[inline(always)]
pub fn recall<C: EbpfContext>(ctx: &C, backend: &Address) -> Option<Address> {
    // SAFETY: plain helper call on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let entry = *VSTEER_REVERSE.get(index(cookie, backend))?;
    (entry.cookie == cookie
        && entry.backend == *backend
        && entry.check == check(cookie, backend, &entry.vip))
    .then_some(entry.vip)
}

#[inline(always)]
fn fold(a: &Address) -> u64 {
    let w = |i: usize| {
        u64::from(u32::from_ne_bytes([
            a.addr[i],
            a.addr[i + 1],
            a.addr[i + 2],
            a.addr[i + 3],
        ]))
    };
    (w(0) ^ w(4) ^ w(8) ^ w(12)) << 16 ^ u64::from(a.port)
}

#[inline(always)]
fn index(cookie: u64, backend: &Address) -> u32 {
    (mix(cookie ^ fold(backend)) as u32) & (REVERSE_SLOTS - 1)
}

#[inline(always)]
fn check(cookie: u64, backend: &Address, vip: &Address) -> u32 {
    (mix(cookie ^ fold(backend).rotate_left(21) ^ fold(vip).rotate_left(42)) >> 32) as u32
}
