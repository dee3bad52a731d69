//! sendmsg4/sendmsg6: a datagram an unconnected UDP socket sends to a VIP goes to a backend.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::steer::{Family, steer};

#[cgroup_sock_addr(sendmsg4)]
pub fn vsteer_sendmsg4(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn vsteer_sendmsg6(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V6)
}
