//! The plan's services and backends in the kernel maps' layout: addresses as 16 bytes in
//! network order (IPv4 as IPv4-mapped IPv6), ports in host order. The one place that
//! converts between the two.

use std::net::{IpAddr, Ipv6Addr};

use vsteer_common::{Address, PROTO_TCP, PROTO_UDP, VipKey};
use vsteer_plan::{Protocol, ServiceKey};

pub fn vip_key(key: &ServiceKey) -> VipKey {
    VipKey {
        addr: addr16(key.vip),
        port: key.port,
        proto: match key.protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        _pad: 0,
    }
}

/// The plan's key of a map key; `None` for a protocol vsteer never writes.
pub fn service_key(key: &VipKey) -> Option<ServiceKey> {
    let protocol = match key.proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    Some(ServiceKey::new(ip(&key.addr), key.port, protocol))
}

// The plan marks a refused share with the port the kernel's programs refuse.
const _: () = assert!(vsteer_plan::REFUSED_PORT == vsteer_common::REFUSED_PORT);

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

/// `127.0.0.1:8080` or `[fd00::1]:53`; `(refused)` for a refused share's slot.
pub fn show(a: &Address) -> String {
    if a.port == vsteer_common::REFUSED_PORT {
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
    fn describes_keys_readably() {
        assert_eq!(
            describe(&VipKey::v4([127, 100, 0, 1], 80, PROTO_TCP)),
            "127.100.0.1:80/TCP"
        );
        let v6 = ServiceKey::new("fd00::1".parse().unwrap(), 53, Protocol::Udp);
        assert_eq!(describe(&vip_key(&v6)), "[fd00::1]:53/UDP");
    }
}
