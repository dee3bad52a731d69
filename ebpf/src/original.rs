//! The original destination of a redirected connection, for the proxy that accepted it:
//! recorded when the client's connection is established, deleted when the client's socket
//! closes, and answered to getsockopt(SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) on the proxy's
//! accepted socket.
use core::ptr::{null_mut, read_volatile};

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_TCP_CLOSE, bpf_sock, bpf_sockopt,
    },
    helpers::generated::bpf_sk_storage_get,
    programs::{SockOpsContext, SockoptContext},
};
use vsteer_common::{Address, OriginalKey, Redirected, v4_mapped, v4_unmapped};

use crate::maps::{VSTEER_ORIGINAL, VSTEER_REDIRECTED};

/// Four context words, each read on its own straight off the context pointer: the verifier
/// refuses a moved context pointer and wider loads.
macro_rules! words {
    ($field:expr) => {
        [
            read_volatile(&$field[0]),
            read_volatile(&$field[1]),
            read_volatile(&$field[2]),
            read_volatile(&$field[3]),
        ]
    };
}

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOL_IP: i32 = 0;
const SOL_IPV6: i32 = 41;
/// SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST (SOL_IPV6) share the number.
const SO_ORIGINAL_DST: i32 = 80;
const SOCKADDR_IN: usize = 16;
const SOCKADDR_IN6: usize = 28;
/// The smallest page: the part of a getsockopt buffer a program is sure to see.
const PAGE_SIZE: i32 = 4096;
/// A cgroup sockopt program's verdict that lets the call complete.
const ALLOW: i32 = 1;

/// sockops: record a redirected connection once established, forget it once closed.
/// Everything else returns after one comparison or two.
#[inline(always)]
pub fn on_sock_op(ctx: &SockOpsContext) {
    match ctx.op() {
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => established(ctx),
        // Only sockets this program asked state callbacks for (or another program did).
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => {
            if let Some(key) = key_of(ctx) {
                let _ = VSTEER_ORIGINAL.remove(key);
            }
        }
        _ => {}
    }
}

#[inline(always)]
fn established(ctx: &SockOpsContext) {
    // SAFETY: the kernel hands sockops a valid context; `sk` may be null (checked).
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    let map = core::ptr::from_ref(&VSTEER_REDIRECTED).cast_mut().cast();
    // SAFETY: a lookup without creation on a non-null socket; a socket that was never
    // redirected has no storage and leaves here.
    let storage = unsafe { bpf_sk_storage_get(map, sk.cast(), null_mut(), 0) }.cast::<Redirected>();
    if storage.is_null() {
        return;
    }
    // SAFETY: non-null: this socket's storage.
    let redirected = unsafe { *storage };
    let Some(key) = key_of(ctx) else { return };
    // A socket redirected once and connected elsewhere since (a retried connect) is not.
    if key.proxy != redirected.proxy {
        return;
    }
    if VSTEER_ORIGINAL.insert(key, redirected.vip, 0).is_ok() {
        let flags = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG;
        let _ = ctx.set_cb_flags(flags as i32);
    }
}

/// (client, proxy) of the client's socket: local and remote.
#[inline(always)]
fn key_of(ctx: &SockOpsContext) -> Option<OriginalKey> {
    let ops = ctx.ops;
    // SAFETY: fields of the valid context. Every one is read up front, whatever the family,
    // so that each load is a plain one at a fixed offset from the context.
    let ends = unsafe {
        Ends {
            family: read_volatile(&(*ops).family),
            local4: read_volatile(&(*ops).local_ip4),
            remote4: read_volatile(&(*ops).remote_ip4),
            local6: words!((*ops).local_ip6),
            remote6: words!((*ops).remote_ip6),
            // Host byte order.
            local_port: read_volatile(&(*ops).local_port) as u16,
            // The network-order port in the upper half of the word (little endian): read
            // as big endian, it is the port.
            remote_port: u32::from_be(read_volatile(&(*ops).remote_port)) as u16,
        }
    };
    let (local, remote) = ends.addresses()?;
    Some(OriginalKey {
        client: local,
        proxy: remote,
    })
}

/// A socket's two ends as the context gives them.
struct Ends {
    family: u32,
    local4: u32,
    remote4: u32,
    local6: [u32; 4],
    remote6: [u32; 4],
    local_port: u16,
    remote_port: u16,
}

impl Ends {
    /// (local, remote) in the maps' layout; `None` for a family that is not IP.
    #[inline(always)]
    fn addresses(&self) -> Option<(Address, Address)> {
        let (local, remote) = match self.family {
            AF_INET => (
                v4_mapped(self.local4.to_ne_bytes()),
                v4_mapped(self.remote4.to_ne_bytes()),
            ),
            AF_INET6 => (bytes(&self.local6), bytes(&self.remote6)),
            _ => return None,
        };
        Some((
            Address {
                addr: local,
                port: self.local_port,
                _pad: 0,
            },
            Address {
                addr: remote,
                port: self.remote_port,
                _pad: 0,
            },
        ))
    }
}

/// Four words in network order as 16 address bytes.
#[inline(always)]
fn bytes(w: &[u32; 4]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[0..4].copy_from_slice(&w[0].to_ne_bytes());
    addr[4..8].copy_from_slice(&w[1].to_ne_bytes());
    addr[8..12].copy_from_slice(&w[2].to_ne_bytes());
    addr[12..16].copy_from_slice(&w[3].to_ne_bytes());
    addr
}

/// cgroup/getsockopt: SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST on an accepted socket of a
/// recorded connection get the VIP; every other call, and a miss, keeps the kernel's answer.
#[inline(always)]
pub fn answer(ctx: &SockoptContext) -> i32 {
    // SAFETY: the kernel hands the program a valid bpf_sockopt for its whole run.
    let opt = unsafe { &mut *ctx.sockopt };
    if opt.optname == SO_ORIGINAL_DST
        && (opt.level == SOL_IP || opt.level == SOL_IPV6)
        && original_dst(opt)
    {
        return ALLOW;
    }
    // Not ours: the kernel's answer stands. Past a page the program sees only part of the
    // buffer; optlen 0 tells the kernel to keep its own (kernels before 6.5 fail the call
    // with EFAULT otherwise, e.g. iptables' large getsockopt calls).
    if opt.optlen > PAGE_SIZE {
        opt.optlen = 0;
    }
    ALLOW
}

/// Answers SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST from the map; `false` when it has nothing
/// for this socket (or the caller's buffer is too small, as the kernel's own would refuse).
#[inline(always)]
fn original_dst(opt: &mut bpf_sockopt) -> bool {
    const MISS: bool = false;
    // SAFETY: getsockopt programs always have their socket.
    let Some(key) = accepted_key(unsafe { opt.__bindgen_anon_1.sk }) else {
        return MISS;
    };
    // SAFETY: copied out at once.
    let Some(vip) = (unsafe { VSTEER_ORIGINAL.get(key) }).copied() else {
        return MISS;
    };
    // SAFETY: reading the buffer bounds the kernel gave.
    let (start, end) = unsafe {
        (
            opt.__bindgen_anon_2.optval as usize,
            opt.__bindgen_anon_3.optval_end as usize,
        )
    };
    let port = vip.port.to_be_bytes();
    if opt.level == SOL_IP {
        // SO_ORIGINAL_DST answers an IPv4 destination only.
        let Some(ip4) = v4_unmapped(&vip.addr) else {
            return MISS;
        };
        if opt.optlen < SOCKADDR_IN as i32 || start + SOCKADDR_IN > end {
            return MISS;
        }
        // struct sockaddr_in: family, port and address in network order, zero padding.
        let mut sin = [0u8; SOCKADDR_IN];
        sin[..2].copy_from_slice(&(AF_INET as u16).to_ne_bytes());
        sin[2..4].copy_from_slice(&port);
        sin[4..8].copy_from_slice(&ip4);
        // SAFETY: start..start+16 lies within the buffer (checked above).
        unsafe { core::ptr::write_unaligned(start as *mut [u8; SOCKADDR_IN], sin) };
        opt.optlen = SOCKADDR_IN as i32;
    } else {
        if opt.optlen < SOCKADDR_IN6 as i32 || start + SOCKADDR_IN6 > end {
            return MISS;
        }
        // struct sockaddr_in6: family, port, flow info 0, address (an IPv4 VIP as
        // IPv4-mapped), scope 0.
        let mut sin6 = [0u8; SOCKADDR_IN6];
        sin6[..2].copy_from_slice(&(AF_INET6 as u16).to_ne_bytes());
        sin6[2..4].copy_from_slice(&port);
        sin6[8..24].copy_from_slice(&vip.addr);
        // SAFETY: start..start+28 lies within the buffer (checked above).
        unsafe { core::ptr::write_unaligned(start as *mut [u8; SOCKADDR_IN6], sin6) };
        opt.optlen = SOCKADDR_IN6 as i32;
    }
    // The kernel's own answer (no conntrack entry) was an error: this one succeeds.
    opt.retval = 0;
    true
}

/// (client, proxy) of an accepted socket: remote and local.
#[inline(always)]
fn accepted_key(sk: *mut bpf_sock) -> Option<OriginalKey> {
    // SAFETY: the program's own socket; every field read up front, as in `key_of`.
    let ends = unsafe {
        Ends {
            family: read_volatile(&(*sk).family),
            local4: read_volatile(&(*sk).src_ip4),
            remote4: read_volatile(&(*sk).dst_ip4),
            local6: words!((*sk).src_ip6),
            remote6: words!((*sk).dst_ip6),
            // Host byte order.
            local_port: read_volatile(&(*sk).src_port) as u16,
            remote_port: u16::from_be(read_volatile(&(*sk).dst_port)),
        }
    };
    let (local, remote) = ends.addresses()?;
    Some(OriginalKey {
        client: remote,
        proxy: local,
    })
}
