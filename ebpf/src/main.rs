//! vsteer's kernel side: cgroup socket hooks that send a connection for a virtual service
//! straight to one of its backends, chosen when the socket connects.
#![no_std]
#![no_main]

mod maps;
mod select;

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use aya_log_ebpf::debug;
use vsteer_common::ServiceKey;

/// Verdict that lets the socket call go on (0 would fail it with EPERM).
const ALLOW: i32 = 1;

/// `connect()` on an IPv4 socket (TCP, and UDP sockets that connect): a VIP:port in the service
/// map is rewritten to a backend before the kernel routes anything.
#[cgroup_sock_addr(connect4)]
pub fn vsteer_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel hands this program a valid bpf_sock_addr for its whole run.
    let sa = unsafe { &mut *ctx.sock_addr };
    let vip = sa.user_ip4.to_ne_bytes();
    let port = u16::from_be(sa.user_port as u16);
    let key = ServiceKey::v4(vip, port, sa.protocol as u8);
    let Some(backend) = select::backend_for(&key) else {
        return ALLOW;
    };
    let Some(ip4) = vsteer_common::v4_unmapped(&backend.addr) else {
        // An IPv6 backend cannot serve an IPv4 socket; leave the connect alone.
        return ALLOW;
    };
    sa.user_ip4 = u32::from_ne_bytes(ip4);
    sa.user_port = u32::from(backend.port.to_be());
    debug!(
        &ctx,
        "connect4 {:i}:{} -> {:i}:{}", vip, port, ip4, backend.port
    );
    ALLOW
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
