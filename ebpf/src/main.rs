//! vsteer's kernel side: cgroup socket hooks that send a connection (or a UDP datagram) for a
//! virtual service straight to one of its backends, and make the application see the VIP it
//! dialed in getpeername() and in the source of UDP replies.
#![no_std]
#![no_main]

mod maps;
mod reverse;
mod select;
mod sockaddr;

use aya_ebpf::{
    bindings::bpf_sock_addr, helpers::bpf_set_retval, macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use vsteer_common::{Address, ServiceKey};

use crate::select::Choice;

/// Verdict that lets the socket call go on.
const ALLOW: i32 = 1;
/// Verdict that fails it, with the errno set through bpf_set_retval.
const DENY: i32 = 0;
const ECONNREFUSED: i32 = 111;

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

/// The common path of connect and sendmsg: look the destination up, rewrite it to a backend,
/// remember the VIP for getpeername and UDP replies, or refuse when there is no backend.
#[inline(always)]
fn steer(ctx: &SockAddrContext, family: Family) -> i32 {
    // SAFETY: the kernel hands the program a valid bpf_sock_addr for its whole run.
    let sa: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let vip = match family {
        Family::V4 => sockaddr::read4(sa),
        Family::V6 => sockaddr::read6(sa),
    };
    let proto = sa.protocol as u8;
    let key = ServiceKey {
        addr: vip.addr,
        port: vip.port,
        proto,
        _pad: 0,
    };
    let backend = match select::choose(ctx, &key) {
        Choice::NotAService => return ALLOW,
        Choice::NoBackend => {
            // SAFETY: plain helper call, allowed in cgroup programs (Linux 5.18+).
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            return DENY;
        }
        Choice::Backend(backend) => backend,
    };
    let written = match family {
        Family::V4 => sockaddr::write4(sa, &backend),
        Family::V6 => sockaddr::write6(sa, &backend),
    };
    if !written {
        return ALLOW;
    }
    // getpeername() and UDP replies translate back through this.
    reverse::remember(ctx, &backend, &vip);
    debug!(
        ctx,
        "steered {:i}:{} -> {:i}:{}", vip.addr, vip.port, backend.addr, backend.port
    );
    ALLOW
}

/// Shows the application the VIP it addressed instead of the backend it reached: as the
/// peer of a connected socket (getpeername) or the source of a UDP reply (recvmsg).
#[inline(always)]
fn restore_vip(ctx: &SockAddrContext, family: Family) -> i32 {
    // SAFETY: as in `steer`.
    let sa: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let from = match family {
        Family::V4 => sockaddr::read4(sa),
        Family::V6 => sockaddr::read6(sa),
    };
    if let Some(vip) = reverse::recall(ctx, &from) {
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

#[cgroup_sock_addr(connect4)]
pub fn vsteer_connect4(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V4)
}

#[cgroup_sock_addr(connect6)]
pub fn vsteer_connect6(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn vsteer_sendmsg4(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn vsteer_sendmsg6(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V6)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn vsteer_recvmsg4(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V4)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn vsteer_recvmsg6(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V6)
}

#[cgroup_sock_addr(getpeername4)]
pub fn vsteer_getpeer4(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V4)
}

#[cgroup_sock_addr(getpeername6)]
pub fn vsteer_getpeer6(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V6)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
