//! Reading and writing the address a socket call names, in the one layout the maps use
//! (IPv4 as IPv4-mapped IPv6).
use aya_ebpf::bindings::bpf_sock_addr;
use vsteer_common::{Address, v4_mapped, v4_unmapped};

#[inline(always)]
pub fn read4(sa: &bpf_sock_addr) -> Address {
    Address {
        addr: v4_mapped(sa.user_ip4.to_ne_bytes()),
        port: u16::from_be(sa.user_port as u16),
        _pad: 0,
    }
}

/// Writes `to` into an IPv4 call; `false` (nothing written) when `to` is not IPv4.
#[inline(always)]
pub fn write4(sa: &mut bpf_sock_addr, to: &Address) -> bool {
    let Some(ip4) = v4_unmapped(&to.addr) else {
        return false;
    };
    sa.user_ip4 = u32::from_ne_bytes(ip4);
    sa.user_port = u32::from(to.port.to_be());
    true
}

#[inline(always)]
pub fn read6(sa: &bpf_sock_addr) -> Address {
    let mut addr = [0u8; 16];
    // The verifier wants user_ip6 read as 4-byte words.
    let words = [
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ];
    for (i, word) in words.iter().enumerate() {
        addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Address {
        addr,
        port: u16::from_be(sa.user_port as u16),
        _pad: 0,
    }
}

/// Writes `to` into an IPv6 call (an IPv4 backend as IPv4-mapped, for dual-stack sockets).
#[inline(always)]
pub fn write6(sa: &mut bpf_sock_addr, to: &Address) -> bool {
    let a = &to.addr;
    sa.user_ip6[0] = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
    sa.user_ip6[1] = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
    sa.user_ip6[2] = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
    sa.user_ip6[3] = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
    sa.user_port = u32::from(to.port.to_be());
    true
}
