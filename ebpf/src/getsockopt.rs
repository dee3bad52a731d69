//! cgroup/getsockopt: SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST for the proxy's accepted
//! connections, so any transparent proxy can sit behind vsteer; other calls pass untouched.
use aya_ebpf::{macros::cgroup_sockopt, programs::SockoptContext};

#[cgroup_sockopt(getsockopt)]
pub fn vsteer_getsopt(ctx: SockoptContext) -> i32 {
    crate::original::answer(&ctx)
}
