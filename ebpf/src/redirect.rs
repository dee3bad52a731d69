//! The L7 path at connect(): a TCP connect to a proxied service goes to the agent's proxy
//! when the socket can reach it and is not one of the proxy's own; the VIP travels with the
//! socket (socket-local storage) to its establishment (sockops) and to getpeername().
use aya_ebpf::{EbpfContext, helpers::bpf_get_netns_cookie, programs::SockAddrContext};
use vsteer_common::{Address, Redirected, proxy_flags, v4_unmapped};

use crate::maps::{VSTEER_PROXY, VSTEER_REDIRECTED};

/// Where the socket of `ctx`, dialing `vip` of a proxied service, goes instead: the proxy
/// for `vip`'s family, with the VIP recorded on the socket. `None` leaves it to the L4 table:
/// no proxy for the family, a socket carrying the proxy's mark, a loopback proxy seen from
/// another network namespace (a pod's loopback has no proxy), or no room to record the VIP.
#[inline(always)]
pub fn to_proxy(ctx: &SockAddrContext, vip: &Address) -> Option<Address> {
    // SAFETY: the value is copied out at once; updates replace it whole (see the map).
    let config = *unsafe { VSTEER_PROXY.get(0u32) }?;
    // IPv4 VIPs (also dialed by dual-stack IPv6 sockets) go to the IPv4 proxy.
    let (proxy, have, loopback) = if v4_unmapped(&vip.addr).is_some() {
        (config.v4, proxy_flags::V4, proxy_flags::V4_LOOPBACK)
    } else {
        (config.v6, proxy_flags::V6, proxy_flags::V6_LOOPBACK)
    };
    if config.flags & have == 0 || proxy.port == 0 {
        return None;
    }
    // SAFETY: the kernel hands a connect program its socket (never null).
    let mark = unsafe { (*(*ctx.sock_addr).__bindgen_anon_1.sk).mark };
    if mark == config.mark {
        return None;
    }
    if config.flags & loopback != 0
        // SAFETY: plain helper call on the program's own context.
        && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != config.netns_cookie
    {
        return None;
    }
    // SAFETY: the storage of the program's own socket, created zeroed when absent.
    let storage = unsafe { VSTEER_REDIRECTED.get_or_insert_ptr_mut(ctx, None) };
    if storage.is_null() {
        return None;
    }
    // SAFETY: a valid storage slot of this socket; only calls on this socket touch it, and
    // the kernel serialises connect() per socket.
    unsafe { *storage = Redirected { vip: *vip, proxy } };
    Some(proxy)
}

/// The VIP a redirected socket dialed, when its peer `from` is the proxy it was sent to.
#[inline(always)]
pub fn recall(ctx: &SockAddrContext, from: &Address) -> Option<Address> {
    // SAFETY: a lookup without creation on the program's own socket.
    let storage = unsafe { VSTEER_REDIRECTED.get_ptr_mut(ctx) };
    if storage.is_null() {
        return None;
    }
    // SAFETY: non-null: this socket's storage.
    let redirected = unsafe { *storage };
    (redirected.proxy == *from).then_some(redirected.vip)
}
