//! connect4/connect6: a TCP connect (or a UDP socket's connect) to a VIP goes to one of its
//! backends, chosen once for the connection; a VIP without backends refuses at once.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::steer::{Family, steer};

#[cgroup_sock_addr(connect4)]
pub fn vsteer_connect4(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V4)
}

#[cgroup_sock_addr(connect6)]
pub fn vsteer_connect6(ctx: SockAddrContext) -> i32 {
    steer(&ctx, Family::V6)
}
