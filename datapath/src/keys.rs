//! The plan's services and backends in the kernel maps' layout: addresses as 16 bytes in
//! network order (IPv4 as IPv4-mapped IPv6), ports in host order. The one place that
//! converts between the two.

use std::net::{IpAddr, Ipv6Addr};

use vsteer_common::{Address, PROTO_TCP, PROTO_UDP, VipKey};
use vsteer_plan::{Protocol, ServiceKey};

/// The map key of a service: an exact VIP (no host bits), or a range with its host bits
/// over the 128-bit address (an IPv4 `/16` has 16).
pub fn vip_key(key: &ServiceKey) -> VipKey {
    let bits: u8 = if key.vip.is_ipv4() { 32 } else { 128 };
    VipKey {
        addr: addr16(key.vip),
        port: key.port,
        proto: match key.protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        host_bits: key.prefix_len.map_or(0, |len| bits.saturating_sub(len)),
    }
}

/// The plan's key of a map key; `None` for a protocol vsteer never writes.
pub fn service_key(key: &VipKey) -> Option<ServiceKey> {
    let protocol = match key.proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    let vip = ip(&key.addr);
    let bits: u8 = if vip.is_ipv4() { 32 } else { 128 };
    if key.host_bits == 0 {
        return Some(ServiceKey::new(vip, key.port, protocol));
    }
    let net = ipnet::IpNet::new(vip, bits.checked_sub(key.host_bits)?).ok()?;
    Some(ServiceKey::range(net, key.port, protocol))
}

// The plan marks a refused share with the port the kernel's programs refuse, and a
// passthrough one with that port and the address they let through.
const _: () = assert!(vsteer_plan::REFUSED_PORT == vsteer_common::REFUSED_PORT);
const _: () = assert!(
    u128::from_be_bytes(vsteer_common::PASSTHROUGH_ADDR)
        == u128::from_be_bytes(std::net::Ipv6Addr::LOCALHOST.octets())
);

pub fn address(ip: IpAddr, port: u16) -> Address {
    Address {
        addr: addr16(ip),
        port,
        _pad: 0,
    }
}

/// IPv6 as is, IPv4 as IPv4-mapped IPv6: the layout every map uses.
fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ip(addr: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// `127.100.0.1:9080/TCP` for logs and errors, as the plan names services.
pub fn describe(key: &VipKey) -> String {
    match service_key(key) {
        Some(key) => key.to_string(),
        None => format!("{}:{}/{}", ip(&key.addr), key.port, key.proto),
    }
}

/// `127.0.0.1:8080` or `[fd00::1]:53`; `(refused)` for a refused share's slot,
/// `(address dialled)` for a passthrough one.
pub fn show(a: &Address) -> String {
    if a.is_passthrough() {
        return "(address dialled)".to_string();
    }
    if a.is_refused() {
        return "(refused)".to_string();
    }
    socket_addr(a).to_string()
}

/// A map address as a socket address (IPv4-mapped as IPv4).
pub fn socket_addr(a: &Address) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip(&a.addr), a.port)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv4_keys_match_what_the_kernel_program_builds() {
        let key = ServiceKey::new(
            IpAddr::V4(Ipv4Addr::new(127, 100, 0, 1)),
            9080,
            Protocol::Tcp,
        );
        assert_eq!(vip_key(&key), VipKey::v4([127, 100, 0, 1], 9080, PROTO_TCP));
        assert_eq!(service_key(&vip_key(&key)), Some(key));
    }

    #[test]
    fn range_keys_count_host_bits_over_the_mapped_address() {
        let v4 = ServiceKey::range("10.1.0.0/16".parse().unwrap(), 80, Protocol::Tcp);
        let key = vip_key(&v4);
        assert_eq!(key.host_bits, 16);
        assert_eq!(service_key(&key), Some(v4));
        assert_eq!(describe(&key), "10.1.0.0/16:80/TCP");
        let v6 = ServiceKey::range("fd00::/64".parse().unwrap(), 53, Protocol::Udp);
        assert_eq!(vip_key(&v6).host_bits, 64);
        assert_eq!(service_key(&vip_key(&v6)), Some(v6));
        let all = ServiceKey::range("0.0.0.0/0".parse().unwrap(), 80, Protocol::Tcp);
        assert_eq!(vip_key(&all).host_bits, 32);
        assert_eq!(service_key(&vip_key(&all)), Some(all));
        assert_eq!(
            show(&address(vsteer_plan::PASSTHROUGH_ADDRESS, 0)),
            "(address dialled)"
        );
        assert_eq!(show(&address("::".parse().unwrap(), 0)), "(refused)");
    }

    #[test]
    fn describes_keys_readably() {
        assert_eq!(
            describe(&VipKey::v4([127, 100, 0, 1], 80, PROTO_TCP)),
            "127.100.0.1:80/TCP"
        );
        let v6 = ServiceKey::new("fd00::1".parse().unwrap(), 53, Protocol::Udp);
        assert_eq!(describe(&vip_key(&v6)), "[fd00::1]:53/UDP");
    }
}
