//! A ServiceEntry with STATIC resolution: hosts, virtual IPs, ports and endpoints. Each
//! (address, port) of an accepted entry is a service; its hosts are destinations for routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Problems;
use super::names::is_dns1123_label;
use super::plan::{BackendPlan, Protocol};
use crate::config::{ConfigError, Resource, ServiceEntrySpec, WorkloadEntry};

/// An accepted ServiceEntry.
pub(super) struct Entry<'a> {
    pub id: String,
    /// As written: Istio does not expand a ServiceEntry's hosts. At least one.
    pub hosts: &'a [String],
    /// The virtual IPs, with their index in `spec.addresses`.
    pub vips: Vec<(usize, IpAddr)>,
    pub ports: Vec<Port>,
    endpoints: Vec<(&'a WorkloadEntry, IpAddr)>,
}

impl<'a> Entry<'a> {
    /// The host the plan lists the entry's services under.
    pub fn host(&self) -> &'a str {
        self.hosts.first().map(String::as_str).unwrap_or_default()
    }

    pub fn port(&self, number: u16) -> Option<&Port> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// The labels of every endpoint, of either family.
    pub fn endpoint_labels(&self) -> impl Iterator<Item = &'a BTreeMap<String, String>> + '_ {
        self.endpoints.iter().map(|(endpoint, _)| &endpoint.labels)
    }

    /// The endpoints a connection to `vip` on `port` can be sent to: those of the VIP's
    /// address family (a connect cannot change family), each at its port for `port`, in
    /// the order of `spec.endpoints`. Weights and subsets are left for the caller.
    pub fn backends(&self, vip: IpAddr, port: &Port) -> Vec<BackendPlan> {
        self.endpoints
            .iter()
            .filter(|(_, address)| address.is_ipv4() == vip.is_ipv4())
            .map(|&(endpoint, address)| BackendPlan {
                address,
                port: endpoint_port(endpoint.ports.get(&port.name), port),
                weight: 0,
                labels: endpoint.labels.clone(),
                subsets: Vec::new(),
            })
            .collect()
    }
}

/// What an accepted ServiceEntry contributes.
pub(super) struct Compiled<'a> {
    pub entry: Entry<'a>,
    /// Worth telling the user, but no reason to reject the resource.
    pub notes: Vec<String>,
}

/// Validates a ServiceEntry. Any error rejects the whole resource: a partly applied
/// ServiceEntry would steer some ports and not others, which is harder to notice than a
/// clear rejection.
pub(super) fn compile<'a>(
    resource: &'a Resource,
    spec: &'a ServiceEntrySpec,
) -> Result<Compiled<'a>, Vec<ConfigError>> {
    let mut problems = Problems::new(resource);
    check_settings(spec, &mut problems);
    check_hosts(spec, &mut problems);
    let vips = vips(spec, &mut problems);
    let ports = ports(spec, &mut problems);
    let endpoints = endpoints(spec, &mut problems);
    problems.into_result()?;

    let id = resource.id();
    let mut notes = Vec::new();
    for &(_, vip) in &vips {
        let other = endpoints
            .iter()
            .filter(|(_, address)| address.is_ipv4() != vip.is_ipv4())
            .count();
        // Endpoints of one family only, with a VIP of the other, are a service with no
        // backend of its own (a route may still send it elsewhere), reported per service.
        if other > 0 && other < endpoints.len() {
            notes.push(format!(
                "{id}: {vip} uses only its {} endpoints; {other} endpoint(s) of the other family are left out",
                family(vip),
            ));
        }
    }
    if spec.hosts.len() > 1 {
        notes.push(format!(
            "{id}: hosts {} share its addresses; the plan lists them under the first",
            spec.hosts.join(", ")
        ));
    }
    if spec.endpoints.iter().any(|e| e.weight.is_some()) {
        notes.push(format!(
            "{id}: endpoint weights are not applied yet; every endpoint gets an equal share"
        ));
    }
    Ok(Compiled {
        entry: Entry {
            id,
            hosts: &spec.hosts,
            vips,
            ports,
            endpoints,
        },
        notes,
    })
}

/// Resolution, location and workloadSelector: whether vsteer can steer this entry at all.
fn check_settings(spec: &ServiceEntrySpec, problems: &mut Problems) {
    match spec.resolution.as_deref() {
        Some("STATIC") => {}
        None => problems.add(
            "spec.resolution",
            "resolution is not set, which Istio reads as NONE; only STATIC is supported",
        ),
        Some(known @ ("NONE" | "DNS" | "DNS_ROUND_ROBIN" | "DYNAMIC_DNS")) => problems.add(
            "spec.resolution",
            format!("resolution {known} is not supported yet; only STATIC is supported"),
        ),
        Some(other) => problems.add(
            "spec.resolution",
            format!("unknown resolution {other:?}; only STATIC is supported"),
        ),
    }
    if let Some(location) = spec.location.as_deref()
        && !matches!(location, "MESH_EXTERNAL" | "MESH_INTERNAL")
    {
        problems.add(
            "spec.location",
            format!("unknown location {location:?}; expected MESH_EXTERNAL or MESH_INTERNAL"),
        );
    }
    if spec.workload_selector.is_some() {
        problems.add(
            "spec.workloadSelector",
            "workloadSelector is not supported yet; list the workloads under spec.endpoints",
        );
    }
}

fn check_hosts(spec: &ServiceEntrySpec, problems: &mut Problems) {
    problems.check_hosts(
        &spec.hosts,
        "the wildcard host * is not allowed in a ServiceEntry",
    );
    // Istio's own rule: only HTTP (Host header) and TLS (SNI) say which host a connection is
    // for, so several hosts on one address need such ports.
    if spec.hosts.len() > 1
        && spec
            .ports
            .iter()
            .any(|p| parse_protocol(&p.protocol).is_some_and(|p| !p.names_host))
    {
        problems.add(
            "spec.hosts",
            "several hosts need HTTP or TLS ports: a plain TCP or UDP connection does not say which host it is for",
        );
    }
}

/// The virtual IPs, with their index in `spec.addresses`.
fn vips(spec: &ServiceEntrySpec, problems: &mut Problems) -> Vec<(usize, IpAddr)> {
    if spec.addresses.is_empty() {
        problems.add(
            "spec.addresses",
            "no addresses: vsteer steers connections by virtual IP, so a ServiceEntry needs at least one IP address",
        );
    }
    let mut seen: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut vips = Vec::new();
    for (i, address) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        match parse_vip(address) {
            Ok(vip) => match seen.get(&vip) {
                Some(first) => problems.add(
                    field,
                    format!("{vip} is already listed at spec.addresses[{first}]"),
                ),
                None => {
                    seen.insert(vip, i);
                    vips.push((i, vip));
                }
            },
            Err(message) => problems.add(field, message),
        }
    }
    vips
}

/// An IP literal; a CIDR only when it is a single address (`/32`, `/128`).
fn parse_vip(address: &str) -> Result<IpAddr, String> {
    let Some((ip, prefix)) = address.split_once('/') else {
        return address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"));
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{address:?} is not an IP address or CIDR"))?;
    let full = if ip.is_ipv4() { "32" } else { "128" };
    if prefix == full {
        Ok(ip)
    } else {
        Err(format!(
            "{address:?}: CIDR addresses are not supported yet; list single IP addresses"
        ))
    }
}

/// A validated service port.
pub(super) struct Port {
    pub number: u16,
    pub protocol: Protocol,
    pub kind: PortKind,
    pub name: String,
    target: Option<u16>,
}

/// Which rules of a VirtualService route a port: Istio decides by the port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortKind {
    /// HTTP, HTTP2, gRPC: the `http` rules.
    Http,
    /// TCP, TLS, HTTPS, Mongo, ...: the `tls` rules (by SNI), then the `tcp` rules.
    Tcp,
    /// No VirtualService rule routes UDP: Istio does not proxy it.
    Udp,
}

fn ports(spec: &ServiceEntrySpec, problems: &mut Problems) -> Vec<Port> {
    if spec.ports.is_empty() {
        problems.add("spec.ports", "at least one port is required");
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut numbers: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ports = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let number = port_number(port.number);
        if number.is_none() {
            problems.add(
                format!("spec.ports[{i}].number"),
                format!("port must be between 1 and 65535, got {}", port.number),
            );
        } else if let Some(first) = numbers.get(&port.number) {
            problems.add(
                format!("spec.ports[{i}].number"),
                format!(
                    "port {} is already listed at spec.ports[{first}]",
                    port.number
                ),
            );
        } else {
            numbers.insert(port.number, i);
        }

        let protocol = parse_protocol(&port.protocol);
        if protocol.is_none() {
            problems.add(
                format!("spec.ports[{i}].protocol"),
                format!(
                    "unknown protocol {:?}; Istio knows {}",
                    port.protocol,
                    KNOWN_PROTOCOLS.join(", ")
                ),
            );
        }

        let name_field = format!("spec.ports[{i}].name");
        if port.name.is_empty() {
            problems.add(name_field, "port name is required");
        } else if !is_dns1123_label(&port.name) {
            problems.add(
                name_field,
                format!(
                    "port name {:?} must be a DNS-1123 label (lowercase letters, digits and '-')",
                    port.name
                ),
            );
        } else if let Some(first) = names.get(port.name.as_str()) {
            problems.add(
                name_field,
                format!(
                    "port name {:?} is already used by spec.ports[{first}]",
                    port.name
                ),
            );
        } else {
            names.insert(&port.name, i);
        }

        let target = match port.target_port {
            None => Some(None),
            Some(t) => port_number(t).map(Some),
        };
        if target.is_none() {
            problems.add(
                format!("spec.ports[{i}].targetPort"),
                format!(
                    "targetPort must be between 1 and 65535, got {}",
                    port.target_port.unwrap_or_default()
                ),
            );
        }

        if let (Some(number), Some(protocol), Some(target)) = (number, protocol, target) {
            ports.push(Port {
                number,
                protocol: protocol.transport,
                kind: protocol.kind,
                name: port.name.clone(),
                target,
            });
        }
    }
    ports
}

/// The endpoints with their IP addresses. None is valid: a service with no backend, whose
/// connects are refused (as Istio answers 503), unless a route sends them elsewhere.
fn endpoints<'a>(
    spec: &'a ServiceEntrySpec,
    problems: &mut Problems,
) -> Vec<(&'a WorkloadEntry, IpAddr)> {
    let port_names: BTreeSet<&str> = spec.ports.iter().map(|p| p.name.as_str()).collect();
    let mut addresses = Vec::new();
    for (j, endpoint) in spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{j}].address");
        if endpoint.address.is_empty() {
            problems.add(field, "address is required");
        } else {
            match endpoint.address.parse::<IpAddr>() {
                Ok(address) => addresses.push((endpoint, address)),
                // Istio also allows host names (DNS resolution) and unix:// sockets here.
                Err(_) => problems.add(
                    field,
                    format!(
                        "only IP endpoints are supported with STATIC resolution, got {:?}",
                        endpoint.address
                    ),
                ),
            }
        }
        for (name, &number) in &endpoint.ports {
            let field = format!("spec.endpoints[{j}].ports.{name}");
            if !port_names.contains(name.as_str()) {
                problems.add(
                    field,
                    format!(
                        "{name:?} names no port of this ServiceEntry (its ports: {})",
                        port_names.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            } else if port_number(number).is_none() {
                problems.add(
                    field,
                    format!("port must be between 1 and 65535, got {number}"),
                );
            }
        }
    }
    addresses
}

/// The endpoint's own port for this service port, else the target port, else the port.
fn endpoint_port(own: Option<&u32>, port: &Port) -> u16 {
    own.and_then(|&n| port_number(n))
        .or(port.target)
        .unwrap_or(port.number)
}

fn port_number(number: u32) -> Option<u16> {
    u16::try_from(number).ok().filter(|&n| n != 0)
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// What a port's protocol means for steering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortProtocol {
    transport: Protocol,
    kind: PortKind,
    /// HTTP (Host header) and TLS (SNI) connections say which host they are for.
    names_host: bool,
}

const KNOWN_PROTOCOLS: [&str; 12] = [
    "HTTP",
    "HTTPS",
    "HTTP2",
    "HTTP_PROXY",
    "GRPC",
    "GRPC-Web",
    "TLS",
    "TCP",
    "UDP",
    "Mongo",
    "Redis",
    "MySQL",
];

/// Istio's protocol names, case-insensitive as Istio parses them. Empty means "detect the
/// protocol", which at layer 4 is TCP.
fn parse_protocol(name: &str) -> Option<PortProtocol> {
    let (transport, kind, names_host) = match name.to_ascii_lowercase().as_str() {
        "http" | "http2" | "http_proxy" | "grpc" | "grpc-web" => {
            (Protocol::Tcp, PortKind::Http, true)
        }
        "https" | "tls" => (Protocol::Tcp, PortKind::Tcp, true),
        // An undeclared protocol is sniffed by Istio; at connect time there is nothing to
        // sniff yet, so it is TCP.
        "" | "tcp" | "mongo" | "redis" | "mysql" => (Protocol::Tcp, PortKind::Tcp, false),
        "udp" => (Protocol::Udp, PortKind::Udp, false),
        _ => return None,
    };
    Some(PortProtocol {
        transport,
        kind,
        names_host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_map_to_transports() {
        for name in [
            "HTTP", "https", "GRPC", "TLS", "TCP", "MONGO", "Redis", "mysql", "",
        ] {
            assert_eq!(
                parse_protocol(name).map(|p| p.transport),
                Some(Protocol::Tcp),
                "{name}"
            );
        }
        assert_eq!(
            parse_protocol("UDP").map(|p| p.transport),
            Some(Protocol::Udp)
        );
        assert_eq!(parse_protocol("SCTP"), None);
        let kind = |name| parse_protocol(name).map(|p| p.kind);
        assert_eq!(kind("GRPC"), Some(PortKind::Http));
        assert_eq!(kind("http2"), Some(PortKind::Http));
        assert_eq!(kind("HTTPS"), Some(PortKind::Tcp));
        assert_eq!(kind("MONGO"), Some(PortKind::Tcp));
        assert_eq!(kind("UDP"), Some(PortKind::Udp));
        for name in KNOWN_PROTOCOLS {
            assert!(parse_protocol(name).is_some(), "{name}");
        }
    }

    #[test]
    fn vips_accept_single_address_cidrs_only() {
        assert_eq!(parse_vip("10.0.0.1"), Ok("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_vip("10.0.0.1/32"), Ok("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_vip("fd00::1/128"), Ok("fd00::1".parse().unwrap()));
        assert!(parse_vip("10.0.0.0/24").unwrap_err().contains("CIDR"));
        assert!(parse_vip("fd00::/64").unwrap_err().contains("CIDR"));
        assert!(parse_vip("reviews").unwrap_err().contains("not an IP"));
    }
}
