//! sockops: a redirected connection's original destination, recorded once the client's
//! connection is established and deleted when its socket closes.
use aya_ebpf::{macros::sock_ops, programs::SockOpsContext};

#[sock_ops]
pub fn vsteer_sockops(ctx: SockOpsContext) -> u32 {
    crate::original::on_sock_op(&ctx);
    1
}
