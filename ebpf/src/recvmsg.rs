//! recvmsg4/recvmsg6: a UDP reply from a backend appears to come from the VIP the
//! application sent to.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::steer::{Family, Shown, restore_vip};

#[cgroup_sock_addr(recvmsg4)]
pub fn vsteer_recvmsg4(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V4, Shown::Source)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn vsteer_recvmsg6(ctx: SockAddrContext) -> i32 {
    restore_vip(&ctx, Family::V6, Shown::Source)
}
