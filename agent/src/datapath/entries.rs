//! From a plan to map entries: what the kernel's service and backend maps should hold.
use std::{collections::BTreeMap, net::IpAddr};

use vsteer_common::{Backend, PROTO_TCP, PROTO_UDP, ServiceKey};

use crate::compiler::{Plan, Protocol};

/// Every service of the plan with the backends its connects go to, in slot order.
pub type Desired = BTreeMap<ServiceKey, Vec<Backend>>;

pub fn desired(plan: &Plan) -> Desired {
    plan.services
        .iter()
        .map(|service| {
            let key = service_key(service.vip, service.port, service.protocol);
            let backends = service
                .backends
                .iter()
                .map(|b| backend(b.address, b.port))
                .collect();
            (key, backends)
        })
        .collect()
}

pub fn service_key(vip: IpAddr, port: u16, protocol: Protocol) -> ServiceKey {
    ServiceKey {
        addr: addr16(vip),
        port,
        proto: match protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        _pad: 0,
    }
}

pub fn backend(address: IpAddr, port: u16) -> Backend {
    Backend {
        addr: addr16(address),
        port,
        _pad: 0,
    }
}

/// IPv6 as is, IPv4 as IPv4-mapped IPv6: the layout both maps use.
fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv4_keys_match_what_the_kernel_program_builds() {
        let key = service_key(
            IpAddr::V4(Ipv4Addr::new(127, 100, 0, 1)),
            9080,
            Protocol::Tcp,
        );
        assert_eq!(key, ServiceKey::v4([127, 100, 0, 1], 9080, PROTO_TCP));
        let udp = service_key(IpAddr::V4(Ipv4Addr::new(127, 100, 0, 1)), 53, Protocol::Udp);
        assert_eq!(udp.proto, PROTO_UDP);
    }
}
