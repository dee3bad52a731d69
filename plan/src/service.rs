//! Steered services: a VIP, port and protocol, where its connections go and how one backend
//! is picked, and whether the kernel serves it alone or sends it to the proxy.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use vsteer_model::{Labels, ResourceId};

use crate::http::HttpRouteTable;
use crate::route::RouteRef;

/// Backend weights are parts per million of a service's connects.
pub const WEIGHT_SCALE: u32 = 1_000_000;

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

/// What identifies a service, in the plan and in the kernel: one virtual IP, or a range of
/// them (a ServiceEntry's CIDR address), with a port and protocol. A connect to an address
/// of several services takes the exact VIP first, then the longest range (as Envoy matches
/// a listener's prefix ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The VIP, or a range's network address (its host bits zero).
    pub vip: IpAddr,
    /// `None`: the one address `vip`. Else the prefix length of the range `vip/len`,
    /// shorter than the address (a `/32` or `/128` is its one address).
    pub prefix_len: Option<u8>,
    pub port: u16,
    pub protocol: Protocol,
}

impl ServiceKey {
    pub fn new(vip: IpAddr, port: u16, protocol: Protocol) -> ServiceKey {
        ServiceKey {
            vip,
            prefix_len: None,
            port,
            protocol,
        }
    }

    /// The service of every address of `net`: its one address when the prefix is full.
    pub fn range(net: ipnet::IpNet, port: u16, protocol: Protocol) -> ServiceKey {
        let net = net.trunc();
        ServiceKey {
            vip: net.addr(),
            prefix_len: (net.prefix_len() < net.max_prefix_len()).then_some(net.prefix_len()),
            port,
            protocol,
        }
    }

    /// Whether a connect to `ip` (on this port and protocol) can be this service's.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.net().contains(&ip)
    }

    /// The addresses of the service: its range, or its one address as a full-length prefix.
    pub fn net(&self) -> ipnet::IpNet {
        let len = self.prefix_len.unwrap_or(match self.vip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        });
        // A prefix_len longer than the address is never built (`range` checks it); fall back
        // to the one address rather than panic on a hand-made key.
        ipnet::IpNet::new(self.vip, len).unwrap_or_else(|_| ipnet::IpNet::from(self.vip))
    }

    /// `10.0.0.1` or `10.1.0.0/16`.
    pub fn address(&self) -> String {
        match self.prefix_len {
            None => self.vip.to_string(),
            Some(len) => format!("{}/{len}", self.vip),
        }
    }
}

/// `10.0.0.1:80/TCP`, `[fd00::1]:53/UDP`, `10.1.0.0/16:80/TCP`, `[fd00::/64]:80/TCP`: how
/// messages name a service.
impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address_port(), self.protocol)
    }
}

impl ServiceKey {
    /// `10.0.0.1:80`, `[fd00::1]:53`, `10.1.0.0/16:80`, `[fd00::/64]:80`.
    pub fn address_port(&self) -> String {
        match (self.prefix_len, self.vip) {
            (None, vip) => SocketAddr::new(vip, self.port).to_string(),
            (Some(_), IpAddr::V4(_)) => format!("{}:{}", self.address(), self.port),
            (Some(_), IpAddr::V6(_)) => format!("[{}]:{}", self.address(), self.port),
        }
    }
}

/// As `{"vip": "10.1.0.0/16", "port": 80, "protocol": "TCP"}`: a range's VIP with its
/// prefix length, a single address as it is.
impl Serialize for ServiceKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ServiceKey", 3)?;
        s.serialize_field("vip", &self.address())?;
        s.serialize_field("port", &self.port)?;
        s.serialize_field("protocol", &self.protocol)?;
        s.end()
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

/// Who serves a service's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "serve", rename_all = "lowercase")]
pub enum Decision {
    /// Every rule that can apply is decided at `connect()`: the kernel alone steers it.
    Kernel,
    /// Some rule needs to see requests; `reason` names the first one and its field, e.g.
    /// `VirtualService default/reviews http[0].match[0].headers[end-user]`.
    Proxy { reason: String },
}

/// Every virtual service vsteer steers, by key. Serializes (e.g. for `vsteer plan --json`)
/// as `{"services": [...]}` in key order, addresses as strings, protocols as `"TCP"`/`"UDP"`
/// and load balancers as `"ROUND_ROBIN"` etc.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Boxed: filled in key order, a B-tree's leaves end half full, which with the plans
    /// inline would waste half of the largest structure of the agent.
    services: BTreeMap<ServiceKey, Box<ServicePlan>>,
}

impl Plan {
    pub fn get(&self, vip: IpAddr, port: u16, protocol: Protocol) -> Option<&ServicePlan> {
        self.service(&ServiceKey::new(vip, port, protocol))
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServicePlan> {
        self.services.get(key).map(|s| &**s)
    }

    /// In key order: (vip, port, protocol).
    pub fn services(&self) -> impl ExactSizeIterator<Item = &ServicePlan> + '_ {
        self.services.values().map(|s| &**s)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ServiceKey> + '_ {
        self.services.keys()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Adds or replaces the service of `plan.key`; returns the one it replaced.
    pub fn insert(&mut self, plan: ServicePlan) -> Option<ServicePlan> {
        self.services.insert(plan.key, Box::new(plan)).map(|s| *s)
    }

    pub fn remove(&mut self, key: &ServiceKey) -> Option<ServicePlan> {
        self.services.remove(key).map(|s| *s)
    }
}

impl FromIterator<ServicePlan> for Plan {
    fn from_iter<I: IntoIterator<Item = ServicePlan>>(iter: I) -> Self {
        Plan {
            services: iter.into_iter().map(|s| (s.key, Box::new(s))).collect(),
        }
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Services<'a> {
            services: Vec<&'a ServicePlan>,
        }
        Services {
            services: self.services().collect(),
        }
        .serialize(serializer)
    }
}

/// One virtual IP, port and protocol, and where its connections go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePlan {
    #[serde(flatten)]
    pub key: ServiceKey,
    /// The ServiceEntry host of this VIP.
    pub host: Arc<str>,
    /// The ServiceEntry that defines it.
    pub resource: ResourceId,
    /// The rule that routes it; `None` when no VirtualService applies and connections go to
    /// all endpoints of the host.
    pub route: Option<RouteRef>,
    pub load_balancer: LoadBalancer,
    /// Only weights above 0, one per (address, port), sorted by (address, port); the weights
    /// sum to exactly [`WEIGHT_SCALE`] when there are any. Empty: the service has no backend
    /// and the datapath refuses its connects (`ECONNREFUSED`).
    pub backends: Vec<BackendPlan>,
    pub decision: Decision,
    /// The HTTP rules of the VirtualService that applies, compiled for this service: what
    /// the proxy serves per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Arc<HttpRouteTable>>,
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendPlan {
    pub address: IpAddr,
    pub port: u16,
    /// Parts per million ([`WEIGHT_SCALE`]) of the service's connects.
    pub weight: u32,
    /// The endpoint's labels (shared with every other backend planned from that endpoint).
    pub labels: Labels,
    /// Names of the DestinationRule subsets (for the backend's host) whose labels this
    /// endpoint matches (shared with the rule).
    pub subsets: Vec<Arc<str>>,
}

/// The port that marks a backend slot that is no endpoint: a refused share (address `::`,
/// see `BackendPlan::refused`) or a passthrough one (address [`PASSTHROUGH_ADDRESS`]). The
/// kernel's programs know it as `vsteer_common::REFUSED_PORT`, which the datapath checks is
/// equal. No endpoint has port 0 (ports are checked to be 1 to 65535).
pub const REFUSED_PORT: u16 = 0;

/// With port 0, the address that marks a passthrough share: the connect goes on to the
/// address it dialled, unchanged (Envoy's ORIGINAL_DST cluster, what Istio builds for a
/// ServiceEntry with `resolution: NONE`). The kernel's programs know it as
/// `vsteer_common::PASSTHROUGH_ADDR`.
pub const PASSTHROUGH_ADDRESS: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

/// Whether a backend (of the kernel's table or a proxy cluster) at `address`:`port` is the
/// passthrough marker.
pub fn is_passthrough(address: IpAddr, port: u16) -> bool {
    port == REFUSED_PORT && address == PASSTHROUGH_ADDRESS
}

impl BackendPlan {
    /// A share whose connects are refused (`ECONNREFUSED`): the share of a route to a subset
    /// that no DestinationRule defines, or that selects no endpoint, where Envoy answers 503.
    pub fn refused(weight: u32) -> BackendPlan {
        BackendPlan {
            address: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            port: REFUSED_PORT,
            weight,
            labels: Labels::default(),
            subsets: Vec::new(),
        }
    }

    /// A share whose connects go to the address they dialled: a route to a ServiceEntry
    /// host with `resolution: NONE`.
    pub fn passthrough(weight: u32) -> BackendPlan {
        BackendPlan {
            address: PASSTHROUGH_ADDRESS,
            port: REFUSED_PORT,
            weight,
            labels: Labels::default(),
            subsets: Vec::new(),
        }
    }

    pub fn is_refused(&self) -> bool {
        self.port == REFUSED_PORT && !self.is_passthrough()
    }

    pub fn is_passthrough(&self) -> bool {
        is_passthrough(self.address, self.port)
    }
}

#[cfg(test)]
mod tests {
    use vsteer_model::Kind;

    use super::*;
    use crate::route::Section;

    fn service(vip: &str, port: u16, protocol: Protocol) -> ServicePlan {
        ServicePlan {
            key: ServiceKey::new(vip.parse().unwrap(), port, protocol),
            host: "h".into(),
            resource: ResourceId::new(Kind::ServiceEntry, "default", "h"),
            route: None,
            load_balancer: LoadBalancer::default(),
            backends: Vec::new(),
            decision: Decision::Kernel,
            http: None,
        }
    }

    #[test]
    fn services_are_in_key_order_and_get_finds() {
        let plan: Plan = [
            service("::1", 80, Protocol::Tcp),
            service("10.0.0.2", 80, Protocol::Udp),
            service("10.0.0.2", 80, Protocol::Tcp),
            service("10.0.0.10", 53, Protocol::Udp),
        ]
        .into_iter()
        .collect();
        let keys: Vec<_> = plan.services().map(|s| s.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "10.0.0.2:80/TCP",
                "10.0.0.2:80/UDP",
                "10.0.0.10:53/UDP",
                "[::1]:80/TCP"
            ]
        );
        let vip: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            plan.get(vip, 80, Protocol::Udp).unwrap().key.protocol,
            Protocol::Udp
        );
        assert!(plan.get(vip, 81, Protocol::Tcp).is_none());
    }

    #[test]
    fn serializes_addresses_protocols_and_policies_as_text() {
        let mut udp = service("fd00::1", 53, Protocol::Udp);
        udp.load_balancer = LoadBalancer::SourceIpHash;
        udp.route = Some(RouteRef::rule(
            &ResourceId::new(Kind::VirtualService, "default", "dns"),
            Section::Tcp,
            0,
        ));
        let plan: Plan = [udp].into_iter().collect();
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains(r#""vip":"fd00::1""#), "{json}");
        assert!(json.contains(r#""protocol":"UDP""#), "{json}");
        assert!(
            json.contains(r#""load_balancer":"SOURCE_IP_HASH""#),
            "{json}"
        );
        assert!(
            json.contains(r#""route":"VirtualService default/dns tcp[0]""#),
            "{json}"
        );
        assert!(
            json.contains(r#""resource":"ServiceEntry default/h""#),
            "{json}"
        );
        assert!(json.contains(r#""decision":{"serve":"kernel"}"#), "{json}");
        assert_eq!(LoadBalancer::RoundRobin.to_string(), "ROUND_ROBIN");
    }
}
