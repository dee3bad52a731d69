//! getpeername4/getpeername6: a steered socket's peer reads as the VIP it dialed.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::steer::{Family, Shown, restore_vip};

#[cgroup_sock_addr(getpeername4)]
pub fn vsteer_getpeer4(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V4, Shown::Peer)
}

#[cgroup_sock_addr(getpeername6)]
pub fn vsteer_getpeer6(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V6, Shown::Peer)
}
