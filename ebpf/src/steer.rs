//! The common path of every hook: steer a call addressed to a VIP to one of its backends, or
//! show the application the VIP in place of the backend it reached.
use aya_ebpf::{bindings::bpf_sock_addr, helpers::bpf_set_retval, programs::SockAddrContext};
use aya_log_ebpf::debug;
use vsteer_common::{Address, PROTO_UDP, VipKey};

use crate::{redirect, reverse, select, select::Choice, sockaddr, udp_flows};

/// Verdict that lets the socket call go on.
const ALLOW: i32 = 1;
/// Verdict that fails it, with the errno set through bpf_set_retval.
const DENY: i32 = 0;
const ECONNREFUSED: i32 = 111;

#[derive(Clone, Copy, PartialEq)]
pub enum Family {
    V4,
    V6,
}

/// The common path of connect and sendmsg: look the destination up, rewrite it to a backend,
/// remember the VIP for getpeername and UDP replies, or refuse when there is no backend.
#[inline(always)]
pub fn steer(ctx: &SockAddrContext, family: Family) -> i32 {
    // SAFETY: the kernel hands the program a valid bpf_sock_addr for its whole run.
    let sa: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let vip = match family {
        Family::V4 => sockaddr::read4(sa),
        Family::V6 => sockaddr::read6(sa),
    };
    let proto = sa.protocol as u8;
    let key = VipKey {
        addr: vip.addr,
        port: vip.port,
        proto,
        host_bits: 0,
    };
    let backend = match select::choose(ctx, &key) {
        Choice::NotAService => return ALLOW,
        Choice::NoBackend => {
            // SAFETY: plain helper call, allowed in cgroup programs (Linux 5.18+).
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            return DENY;
        }
        Choice::Backend(backend) => backend,
        Choice::Proxy(proxy) => {
            // The VIP is on the socket already (getpeername and sockops read it there).
            write(sa, family, &proxy);
            debug!(
                ctx,
                "to the proxy {:i}:{} -> {:i}:{}", vip.addr, vip.port, proxy.addr, proxy.port
            );
            return ALLOW;
        }
    };
    // A passthrough share (resolution NONE): on to the address dialled, unchanged.
    if backend.is_passthrough() {
        return ALLOW;
    }
    // A refused share (see REFUSED_PORT): fails as a service without backends does.
    if backend.is_refused() {
        // SAFETY: as above.
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return DENY;
    }
    let written = match family {
        Family::V4 => sockaddr::write4(sa, &backend),
        Family::V6 => sockaddr::write6(sa, &backend),
    };
    if !written {
        return ALLOW;
    }
    // getpeername() and UDP replies translate back through this (a UDP socket's flows
    // first: this table may be overwritten by other sockets).
    reverse::remember(ctx, &backend, &vip);
    debug!(
        ctx,
        "steered {:i}:{} -> {:i}:{}", vip.addr, vip.port, backend.addr, backend.port
    );
    ALLOW
}

/// Which call shows the application an address.
#[derive(Clone, Copy, PartialEq)]
pub enum Shown {
    /// getpeername(): a connected socket's peer (maybe a proxied one).
    Peer,
    /// recvmsg(): the source of a UDP datagram.
    Source,
}

/// Shows the application the VIP it addressed instead of the backend (or proxy) it reached:
/// as the peer of a connected socket (getpeername) or the source of a UDP reply (recvmsg).
#[inline(always)]
pub fn restore_vip(ctx: &SockAddrContext, family: Family, shown: Shown) -> i32 {
    // SAFETY: as in `steer`.
    let sa: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let from = match family {
        Family::V4 => sockaddr::read4(sa),
        Family::V6 => sockaddr::read6(sa),
    };
    // Only UDP sockets have flows: a TCP getpeername() pays no storage lookup.
    let udp = sa.protocol as u8 == PROTO_UDP;
    if udp && let Some(vip) = udp_flows::vip_of(ctx, &from) {
        write(sa, family, &vip);
    } else if let Some(vip) = reverse::recall(ctx, &from) {
        write(sa, family, &vip);
    } else if shown == Shown::Peer
        && let Some(vip) = redirect::recall(ctx, &from)
    {
        write(sa, family, &vip);
    }
    ALLOW
}

#[inline(always)]
fn write(sa: &mut bpf_sock_addr, family: Family, to: &Address) {
    match family {
        Family::V4 => sockaddr::write4(sa, to),
        Family::V6 => sockaddr::write6(sa, to),
    };
}
