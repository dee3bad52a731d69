//! The plan: what the datapath must steer, independent of how it was configured.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// Backend weights are parts per million of a service's connects.
pub const WEIGHT_SCALE: u32 = 1_000_000;

/// What identifies a service in the plan and in the kernel.
pub type ServiceKey = (IpAddr, u16, Protocol);

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

/// How the datapath picks one of a service's backends for a new connection, always in
/// proportion to the backends' weights.
///
/// The default is weighted random, not Istio's `LEAST_REQUEST` (Envoy's default): at
/// `connect()` time the kernel has no request counts, and random spreads as evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancer {
    #[default]
    Random,
    RoundRobin,
    LeastRequest,
    /// The same client address always reaches the same backend while the backends stay.
    SourceIpHash,
}

impl fmt::Display for LoadBalancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadBalancer::Random => "RANDOM",
            LoadBalancer::RoundRobin => "ROUND_ROBIN",
            LoadBalancer::LeastRequest => "LEAST_REQUEST",
            LoadBalancer::SourceIpHash => "SOURCE_IP_HASH",
        })
    }
}

/// Every virtual service vsteer steers. Serializes (e.g. to JSON for `vsteer plan --json`)
/// with the field names below, addresses as strings, protocols as `"TCP"`/`"UDP"` and load
/// balancers as `"ROUND_ROBIN"` etc.
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
        self.services.sort_by_key(ServicePlan::key);
    }
}

/// One virtual IP, port and protocol, and where its connections go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePlan {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// The ServiceEntry host of this VIP.
    pub host: String,
    /// The ServiceEntry that defines it: `ServiceEntry default/reviews`.
    pub resource: String,
    /// The rule that routes it, e.g. `VirtualService default/reviews http[1]`; `None` when no
    /// VirtualService applies and connections go to all endpoints of the host.
    pub route: Option<String>,
    pub load_balancer: LoadBalancer,
    /// Only weights above 0, one per (address, port), sorted by (address, port); the weights
    /// sum to exactly [`WEIGHT_SCALE`] when there are any. Empty: the service has no backend
    /// and the datapath refuses its connects (`ECONNREFUSED`).
    pub backends: Vec<BackendPlan>,
}

impl ServicePlan {
    pub fn key(&self) -> ServiceKey {
        (self.vip, self.port, self.protocol)
    }
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendPlan {
    pub address: IpAddr,
    pub port: u16,
    /// Parts per million ([`WEIGHT_SCALE`]) of the service's connects.
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    /// Names of the DestinationRule subsets (for the backend's host) whose labels this
    /// endpoint matches.
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
            route: None,
            load_balancer: LoadBalancer::default(),
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
    fn serializes_addresses_protocols_and_policies_as_text() {
        let mut udp = service("fd00::1", 53, Protocol::Udp);
        udp.load_balancer = LoadBalancer::SourceIpHash;
        udp.route = Some("VirtualService default/dns tcp[0]".into());
        let plan = Plan {
            services: vec![udp],
        };
        let yaml = serde_yaml::to_string(&plan).unwrap();
        assert!(yaml.contains("vip: fd00::1"), "{yaml}");
        assert!(yaml.contains("protocol: UDP"), "{yaml}");
        assert!(yaml.contains("load_balancer: SOURCE_IP_HASH"), "{yaml}");
        assert!(
            yaml.contains("route: VirtualService default/dns tcp[0]"),
            "{yaml}"
        );
        assert_eq!(LoadBalancer::RoundRobin.to_string(), "ROUND_ROBIN");
    }
}
