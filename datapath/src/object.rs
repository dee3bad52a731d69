//! The kernel programs, compiled by `cargo xtask build` and embedded at build time.

/// The eBPF object (ELF with BTF) holding every vsteer program and map, built by this
/// crate's build script; empty when it was built without bpf-linker (see build.rs).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vsteer-ebpf"));

/// Program names as the kernel (and `bpftool prog show`) lists them.
pub const CONNECT4: &str = "vsteer_connect4";

/// The L7 path's programs: original destinations recorded (sockops) and answered
/// (getsockopt).
pub const SOCKOPS: &str = "vsteer_sockops";
/// (Kernel program names stop at 15 characters, hence the short form.)
pub const GETSOCKOPT: &str = "vsteer_getsopt";

/// Every program; each one's section names its cgroup hook.
pub const PROGRAMS: [&str; 10] = [
    CONNECT4,
    "vsteer_connect6",
    "vsteer_sendmsg4",
    "vsteer_sendmsg6",
    "vsteer_recvmsg4",
    "vsteer_recvmsg6",
    "vsteer_getpeer4",
    "vsteer_getpeer6",
    SOCKOPS,
    GETSOCKOPT,
];
