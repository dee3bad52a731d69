//! vsteer's kernel side: cgroup socket hooks that send a connection (or a UDP datagram) for a
//! virtual service straight to one of its backends (or, for a proxied service, to the
//! agent's proxy), and make the application see the VIP it dialed in getpeername() and in
//! the source of UDP replies; sockops and getsockopt hooks that give the proxy each
//! connection's original destination. One file per attach point, each a thin entry into
//! `steer` or `original`.
//!
//! Built for bpfel-unknown-none by the datapath's build script; on any other target this is
//! an empty program, so the workspace checks and lints on every machine.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod getpeername;
#[cfg(target_arch = "bpf")]
mod getsockopt;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod original;
#[cfg(target_arch = "bpf")]
mod recvmsg;
#[cfg(target_arch = "bpf")]
mod redirect;
#[cfg(target_arch = "bpf")]
mod reverse;
#[cfg(target_arch = "bpf")]
mod select;
#[cfg(target_arch = "bpf")]
mod sendmsg;
#[cfg(target_arch = "bpf")]
mod sockaddr;
#[cfg(target_arch = "bpf")]
mod sockops;
#[cfg(target_arch = "bpf")]
mod steer;
#[cfg(target_arch = "bpf")]
mod udp_flows;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
