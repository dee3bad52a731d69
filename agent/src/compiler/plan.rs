//! The plan: what the datapath must steer, independent of how it was configured.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// Transport protocol of a virtual service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// Every virtual service vsteer steers. Serializes (e.g. to JSON for `vsteer plan --json`)
/// with the field names below, addresses as strings and protocols as `"TCP"`/`"UDP"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Sorted by (vip, port, protocol), each key at most once.
    pub services: Vec<ServicePlan>,
}

impl Plan {
    pub fn get(&self, vip: IpAddr, port: u16, protocol: Protocol) -> Option<&ServicePlan> {
        self.services
            .iter()
            .find(|s| s.vip == vip && s.port == port && s.protocol == protocol)
    }

    /// Puts the services in the documented order.
    pub(crate) fn sort(&mut self) {
        self.services.sort_by_key(|s| (s.vip, s.port, s.protocol));
    }
}

/// One virtual IP, port and protocol, and where its connections go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePlan {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// The ServiceEntry host this VIP belongs to.
    pub host: String,
    /// The resource that defined it: `ServiceEntry default/reviews`.
    pub resource: String,
    /// In the order of the ServiceEntry's endpoints; all of the VIP's IP family.
    pub backends: Vec<BackendPlan>,
}

/// One endpoint of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendPlan {
    pub address: IpAddr,
    pub port: u16,
    /// Relative weight; 1 for every endpoint for now.
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    /// Names of the DestinationRule subsets (for the same host) whose labels this endpoint
    /// matches.
    pub subsets: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(vip: &str, port: u16, protocol: Protocol) -> ServicePlan {
        ServicePlan {
            vip: vip.parse().unwrap(),
            port,
            protocol,
            host: "h".into(),
            resource: "ServiceEntry default/h".into(),
            backends: Vec::new(),
        }
    }

    #[test]
    fn sort_orders_by_vip_port_protocol_and_get_finds() {
        let mut plan = Plan {
            services: vec![
                service("::1", 80, Protocol::Tcp),
                service("10.0.0.2", 80, Protocol::Udp),
                service("10.0.0.2", 80, Protocol::Tcp),
                service("10.0.0.10", 53, Protocol::Udp),
            ],
        };
        plan.sort();
        let keys: Vec<_> = plan
            .services
            .iter()
            .map(|s| format!("{} {} {}", s.vip, s.port, s.protocol))
            .collect();
        assert_eq!(
            keys,
            [
                "10.0.0.2 80 TCP",
                "10.0.0.2 80 UDP",
                "10.0.0.10 53 UDP",
                "::1 80 TCP"
            ]
        );
        let vip: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            plan.get(vip, 80, Protocol::Udp).unwrap().protocol,
            Protocol::Udp
        );
        assert!(plan.get(vip, 81, Protocol::Tcp).is_none());
    }

    #[test]
    fn serializes_addresses_and_protocols_as_text() {
        let plan = Plan {
            services: vec![service("fd00::1", 53, Protocol::Udp)],
        };
        let yaml = serde_yaml::to_string(&plan).unwrap();
        assert!(yaml.contains("vip: fd00::1"), "{yaml}");
        assert!(yaml.contains("protocol: UDP"), "{yaml}");
    }
}
