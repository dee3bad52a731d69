//! A ServiceEntry with STATIC, DNS or NONE resolution, checked on its own: hosts, virtual
//! IPs and CIDR ranges, ports and endpoints (for DNS, the addresses the agent's resolver
//! found for them; for NONE, none: connects go on to the address dialled). Each (address or
//! range, port) of an accepted entry is a service; its hosts are destinations for routes.
//! Whether it may hold its VIPs is the registry's question.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use vsteer_model::intern::Interner;
use vsteer_model::istio::{DnsAnswers, ServiceEntrySpec, WorkloadEntry};
use vsteer_model::{Diagnostic, Labels, Precedence, Resource, ResourceId, SmallMap};
use vsteer_plan::{BackendPlan, Protocol, ServiceKey};

use crate::names::{is_dns_name, is_dns1123_label};
use crate::problems::{FieldError, Problems, port_number};

/// What is wrong with a ServiceEntry on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceEntryError {
    #[error(
        "resolution {0} is not supported yet; only NONE, STATIC, DNS and DNS_ROUND_ROBIN are supported"
    )]
    ResolutionUnsupported(String),
    #[error(
        "no endpoints should be provided for resolution {0} (as Istio validates: connects go to the address dialled){unset}",
        unset = if *.1 { "; resolution is not set, which Istio reads as NONE: set STATIC or DNS to use these endpoints" } else { "" }
    )]
    EndpointsWithNone(&'static str, bool),
    #[error(
        "unknown resolution {0:?}; Istio knows NONE, STATIC, DNS, DNS_ROUND_ROBIN and DYNAMIC_DNS"
    )]
    ResolutionUnknown(String),
    #[error("unknown location {0:?}; expected MESH_EXTERNAL or MESH_INTERNAL")]
    LocationUnknown(String),
    #[error("workloadSelector is not supported yet; list the workloads under spec.endpoints")]
    WorkloadSelector,
    #[error(
        "several hosts need HTTP or TLS ports: a plain TCP or UDP connection does not say which host it is for"
    )]
    SeveralHostsNeedHttp,
    #[error("{vip} is already listed at spec.addresses[{first}]")]
    DuplicateAddress { vip: String, first: usize },
    #[error("{0:?} is not an IP address")]
    NotAnIp(String),
    #[error("{0:?} is not an IP address or CIDR")]
    NotAnIpOrCidr(String),
    #[error(
        "{0:?}: CIDR addresses are allowed only with NONE or STATIC resolution (as Istio validates)"
    )]
    CidrWithDns(String),
    #[error("at least one port is required")]
    NoPorts,
    #[error("port {port} is already listed at spec.ports[{first}]")]
    DuplicatePort { port: u32, first: usize },
    #[error("unknown protocol {0:?}; Istio knows {known}", known = KNOWN_PROTOCOLS.join(", "))]
    UnknownProtocol(String),
    #[error("port name {0:?} must be a DNS-1123 label (lowercase letters, digits and '-')")]
    PortName(String),
    #[error("port name {name:?} is already used by spec.ports[{first}]")]
    DuplicatePortName { name: String, first: usize },
    #[error("only IP endpoints are supported with STATIC resolution, got {0:?}")]
    EndpointNotIp(String),
    #[error(
        "{0:?} is neither an IP address nor a DNS name (labels of letters, digits and hyphens joined by dots)"
    )]
    EndpointNotIpOrName(String),
    #[error(
        "{0:?}: with resolution {1} and no endpoints, the hosts are resolved, so each must be a DNS name without wildcards"
    )]
    HostNotResolvable(String, &'static str),
    #[error(
        "resolution DNS_ROUND_ROBIN takes at most one endpoint ({0} listed): Envoy's logical DNS resolves one name"
    )]
    RoundRobinEndpoints(usize),
    #[error("{name:?} names no port of this ServiceEntry (its ports: {ports})")]
    UnknownPortName { name: String, ports: String },
}

/// An accepted ServiceEntry, as far as it can be judged alone.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub id: ResourceId,
    pub precedence: Precedence,
    pub file: Arc<str>,
    /// As written: Istio does not expand a ServiceEntry's hosts. At least one.
    pub hosts: Arc<[Arc<str>]>,
    /// The virtual IPs and CIDR ranges (a single address as its full-length prefix), with
    /// their index in `spec.addresses`.
    pub vips: Vec<(usize, IpNet)>,
    /// NONE: no endpoints; connects to the entry's services, and routes to its hosts, go on
    /// to the address dialled (Envoy's ORIGINAL_DST cluster).
    pub passthrough: bool,
    pub ports: Vec<Port>,
    endpoints: Vec<Endpoint>,
    /// Worth telling the user, but no reason to reject the resource.
    pub notes: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct Endpoint {
    address: IpAddr,
    /// Endpoint port by service port name (shared with the model's endpoint).
    ports: SmallMap<u32>,
    labels: Labels,
    /// Its load-balancing weight among the endpoints of one destination (`weight`; unset or
    /// 0 is 1, as Istio hands Envoy, which takes no 0).
    weight: u32,
    /// `region/zone/subzone`, as written.
    locality: Option<Arc<str>>,
    /// The one host it serves: a DNS entry without endpoints resolves each host into
    /// endpoints of that host only (Istio makes each host a service of its own). `None`:
    /// every host.
    host: Option<Arc<str>>,
}

impl Entry {
    /// The host the plan lists the entry's services under.
    pub fn host(&self) -> &Arc<str> {
        &self.hosts[0]
    }

    pub fn port(&self, number: u16) -> Option<&Port> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// Every service of the entry, with the index of its VIP in `spec.addresses`.
    pub fn keys(&self) -> impl Iterator<Item = (usize, ServiceKey)> + '_ {
        self.vips.iter().flat_map(move |&(index, vip)| {
            self.ports
                .iter()
                .map(move |p| (index, ServiceKey::range(vip, p.number, p.protocol)))
        })
    }

    /// The labels of every endpoint, of either family.
    pub fn endpoint_labels(&self) -> impl Iterator<Item = &Labels> + '_ {
        self.endpoints.iter().map(|e| &e.labels)
    }

    /// The endpoints a connection to `vip` on `port` can be sent to: those of the VIP's
    /// address family (a connect cannot change family), each at its port for `port`, in
    /// the order of `spec.endpoints`. Weights and subsets are left for the caller.
    /// Each with its endpoint's locality, as written. `host` is the destination host
    /// traffic goes to (one of the entry's hosts).
    pub fn located_backends(
        &self,
        vip: IpAddr,
        port: &Port,
        host: &str,
    ) -> Vec<(BackendPlan, Option<Arc<str>>)> {
        if self.passthrough {
            // Of either family: the address dialled is of the VIP's.
            return vec![(BackendPlan::passthrough(1), None)];
        }
        self.endpoints
            .iter()
            .filter(|e| e.address.is_ipv4() == vip.is_ipv4())
            .filter(|e| e.host.as_deref().is_none_or(|h| h == host))
            // The endpoint's own weight, relative within its destination (see `weights`).
            .map(|e| {
                let backend = BackendPlan {
                    address: e.address,
                    port: endpoint_port(e.ports.get(&port.name), port),
                    weight: e.weight,
                    labels: e.labels.clone(),
                    subsets: Vec::new(),
                };
                (backend, e.locality.clone())
            })
            .collect()
    }
}

/// Validates a ServiceEntry. Any error rejects the whole resource: a partly applied
/// ServiceEntry would steer some ports and not others, which is harder to notice than a
/// clear rejection.
pub fn compile(
    resource: &Resource,
    spec: &ServiceEntrySpec,
    hosts: &Interner,
) -> Result<Entry, Vec<Diagnostic>> {
    let mut problems = Problems::new(resource);
    let resolution = check_settings(spec, &mut problems);
    check_hosts(spec, resolution, &mut problems);
    let vips = vips(spec, resolution, &mut problems);
    let ports = ports(spec, &mut problems);
    let (endpoints, lookups) = endpoints(spec, resolution, &mut problems);
    problems.into_result()?;

    let id = &resource.id;
    let mut notes = dns_notes(id, resolution, &lookups, spec.resolved.is_some());
    for &(_, net) in &vips {
        let vip = net.addr();
        let other = endpoints
            .iter()
            .filter(|e| e.address.is_ipv4() != vip.is_ipv4())
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
    if resolution == Resolution::None {
        notes.push(format!(
            "{id}: resolution NONE{unset}: connects to its addresses go on to the address \
             dialled, unless a VirtualService routes them elsewhere; routes to {hosts} do the same",
            unset = if spec.resolution.is_none() {
                " (not set; Istio's default)"
            } else {
                ""
            },
            hosts = spec.hosts.join(", "),
        ));
    }
    if vips.is_empty() && resolution == Resolution::None {
        notes.push(format!(
            "{id}: no addresses: Istio would match connects on its ports to any address not \
             otherwise known (and HTTP ones by Host); vsteer steers by virtual IP and leaves \
             them alone, so they go to the address dialled, as NONE does without rules"
        ));
    } else if vips.is_empty() {
        notes.push(format!(
            "{id}: no addresses, so a destination only: routes of other services can send \
             traffic to its endpoints, but connects to {} are not steered (vsteer steers by \
             virtual IP: list the service's addresses under spec.addresses)",
            spec.hosts.join(", ")
        ));
    }
    notes.extend(crate::export_to::note(
        id,
        resource.namespace(),
        &spec.export_to,
    ));
    if spec.hosts.len() > 1 {
        notes.push(format!(
            "{id}: hosts {} share its addresses; the plan lists them under the first",
            spec.hosts.join(", ")
        ));
    }
    if spec.endpoints.iter().any(|e| e.weight == Some(0)) {
        notes.push(format!(
            "{id}: an endpoint weight of 0 counts as 1 (Envoy takes no 0; Istio passes 1)"
        ));
    }
    Ok(Entry {
        id: id.clone(),
        precedence: resource.precedence.clone(),
        file: resource.origin.file.clone(),
        hosts: spec.hosts.iter().map(|h| hosts.get(h)).collect(),
        vips,
        passthrough: resolution == Resolution::None,
        ports,
        endpoints,
        notes,
    })
}

/// How an entry's endpoints get their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// None: connects go to the address dialled (Istio's default, when unset).
    None,
    /// As written.
    Static,
    /// Every address DNS gives each name (Envoy's strict DNS cluster).
    Dns,
    /// The first address DNS gives, per address family (Envoy's logical DNS cluster, which
    /// connects to the first address of the latest answer).
    DnsRoundRobin,
}

impl Resolution {
    fn of(spec: &ServiceEntrySpec) -> Option<Resolution> {
        match spec.resolution.as_deref() {
            None | Some("NONE") => Some(Resolution::None),
            Some("STATIC") => Some(Resolution::Static),
            Some("DNS") => Some(Resolution::Dns),
            Some("DNS_ROUND_ROBIN") => Some(Resolution::DnsRoundRobin),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Resolution::None => "NONE",
            Resolution::Static => "STATIC",
            Resolution::Dns => "DNS",
            Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        }
    }
}

/// The names the agent's resolver must look up for `spec`: with DNS resolution, each
/// endpoint address that is a DNS name, or each host when there are no endpoints; nothing
/// otherwise. Names the compiler would reject are left out.
pub fn dns_names(spec: &ServiceEntrySpec) -> Vec<&str> {
    match Resolution::of(spec) {
        Some(Resolution::Dns | Resolution::DnsRoundRobin) => {}
        _ => return Vec::new(),
    }
    let names: Vec<&str> = if spec.endpoints.is_empty() {
        spec.hosts.iter().map(String::as_str).collect()
    } else {
        spec.endpoints.iter().map(|e| &*e.address).collect()
    };
    names
        .into_iter()
        .filter(|name| name.parse::<IpAddr>().is_err() && is_dns_name(name))
        .collect()
}

/// Resolution, location and workloadSelector: whether vsteer can steer this entry at all.
fn check_settings(spec: &ServiceEntrySpec, problems: &mut Problems) -> Resolution {
    let resolution = Resolution::of(spec);
    match spec.resolution.as_deref() {
        // Unset is NONE, matched above.
        None => {}
        _ if resolution.is_some() => {}
        Some(known @ "DYNAMIC_DNS") => problems.add(
            "spec.resolution",
            ServiceEntryError::ResolutionUnsupported(known.to_string()),
        ),
        Some(other) => problems.add(
            "spec.resolution",
            ServiceEntryError::ResolutionUnknown(other.to_string()),
        ),
    }
    if resolution == Some(Resolution::None) && !spec.endpoints.is_empty() {
        problems.add(
            "spec.endpoints",
            ServiceEntryError::EndpointsWithNone("NONE", spec.resolution.is_none()),
        );
    }
    if resolution == Some(Resolution::DnsRoundRobin) && spec.endpoints.len() > 1 {
        problems.add(
            "spec.endpoints",
            ServiceEntryError::RoundRobinEndpoints(spec.endpoints.len()),
        );
    }
    if let Some(location) = spec.location.as_deref()
        && !matches!(location, "MESH_EXTERNAL" | "MESH_INTERNAL")
    {
        problems.add(
            "spec.location",
            ServiceEntryError::LocationUnknown(location.to_string()),
        );
    }
    if spec.workload_selector.is_some() {
        problems.add("spec.workloadSelector", ServiceEntryError::WorkloadSelector);
    }
    // Unknown ones are rejected above; STATIC is the rest's least surprising reading.
    resolution.unwrap_or(Resolution::Static)
}

fn check_hosts(spec: &ServiceEntrySpec, resolution: Resolution, problems: &mut Problems) {
    problems.check_hosts(&spec.hosts, "in a ServiceEntry");
    // Istio's own rule: only HTTP (Host header) and TLS (SNI) say which host a connection is
    // for, so several hosts on one address need such ports; with NONE the hosts do not
    // matter (the connect goes where it was dialled).
    if spec.hosts.len() > 1
        && resolution != Resolution::None
        && spec
            .ports
            .iter()
            .any(|p| parse_protocol(&p.protocol).is_some_and(|p| !p.names_host))
    {
        problems.add("spec.hosts", ServiceEntryError::SeveralHostsNeedHttp);
    }
}

/// The virtual IPs and CIDR ranges, with their index in `spec.addresses`.
fn vips(
    spec: &ServiceEntrySpec,
    resolution: Resolution,
    problems: &mut Problems,
) -> Vec<(usize, IpNet)> {
    // None is legal: the entry is then a destination only (see `compile`'s note).
    let mut seen: BTreeMap<IpNet, usize> = BTreeMap::new();
    // Sized up front: an entry is kept for as long as it exists.
    let mut vips = Vec::with_capacity(spec.addresses.len());
    for (i, address) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        if !matches!(resolution, Resolution::Static | Resolution::None) && address.contains('/') {
            // Istio's rule, even for a single-address CIDR.
            problems.add(field, ServiceEntryError::CidrWithDns(address.to_string()));
            continue;
        }
        match parse_vip(address) {
            Ok(vip) => match seen.get(&vip) {
                Some(&first) => problems.add(
                    field,
                    ServiceEntryError::DuplicateAddress {
                        vip: address.to_string(),
                        first,
                    },
                ),
                None => {
                    seen.insert(vip, i);
                    vips.push((i, vip));
                }
            },
            Err(error) => problems.add(field, error),
        }
    }
    vips
}

/// An IP literal (as its full-length prefix) or a CIDR range, its host bits cleared (Envoy
/// matches the prefix). IPv4-mapped IPv6 (`::ffff:10.0.0.1`, `::ffff:10.0.0.0/120`) is its
/// IPv4 form: the kernel maps store IPv4 that way, so the two spellings are one VIP and must
/// meet in the conflict check.
fn parse_vip(address: &str) -> Result<IpNet, ServiceEntryError> {
    if !address.contains('/') {
        return address
            .parse()
            .map(|ip: IpAddr| IpNet::from(ip.to_canonical()))
            .map_err(|_| ServiceEntryError::NotAnIp(address.to_string()));
    }
    let net: IpNet = address
        .parse()
        .map_err(|_| ServiceEntryError::NotAnIpOrCidr(address.to_string()))?;
    Ok(canonical_net(net.trunc()))
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// A validated service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub number: u16,
    pub protocol: Protocol,
    pub kind: PortKind,
    /// HTTP/2 to the endpoints (HTTP2 and GRPC ports), as Istio chooses the upstream.
    pub http2: bool,
    pub name: String,
    target: Option<u16>,
}

/// Which rules of a VirtualService route a port: Istio decides by the port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// HTTP, HTTP2, gRPC: the `http` rules.
    Http,
    /// TLS, HTTPS: the `tls` rules (by SNI, in the proxy); what none takes, all endpoints
    /// (Istio builds no TCP chain for such a port: its `tcp` rules never apply).
    Tls,
    /// TCP, Mongo, ...: the `tcp` rules.
    Tcp,
    /// No protocol declared: Istio detects it per connection, `http` rules for HTTP, the
    /// `tcp` rules for the rest (in vsteer: the proxy tells them apart when an `http` rule
    /// applies; else the kernel serves the `tcp` route).
    Sniffed,
    /// No VirtualService rule routes UDP: Istio does not proxy it.
    Udp,
}

fn ports(spec: &ServiceEntrySpec, problems: &mut Problems) -> Vec<Port> {
    if spec.ports.is_empty() {
        problems.add("spec.ports", ServiceEntryError::NoPorts);
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut numbers: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ports = Vec::with_capacity(spec.ports.len());
    for (i, port) in spec.ports.iter().enumerate() {
        let number = problems.port(format!("spec.ports[{i}].number"), "port", port.number);
        if number.is_some() {
            if let Some(&first) = numbers.get(&port.number) {
                problems.add(
                    format!("spec.ports[{i}].number"),
                    ServiceEntryError::DuplicatePort {
                        port: port.number,
                        first,
                    },
                );
            } else {
                numbers.insert(port.number, i);
            }
        }

        let protocol = parse_protocol(&port.protocol);
        if protocol.is_none() {
            problems.add(
                format!("spec.ports[{i}].protocol"),
                ServiceEntryError::UnknownProtocol(port.protocol.clone()),
            );
        }

        let name_field = format!("spec.ports[{i}].name");
        if port.name.is_empty() {
            problems.add(name_field, FieldError::Required { what: "port name" });
        } else if !is_dns1123_label(&port.name) {
            problems.add(name_field, ServiceEntryError::PortName(port.name.clone()));
        } else if let Some(&first) = names.get(port.name.as_str()) {
            problems.add(
                name_field,
                ServiceEntryError::DuplicatePortName {
                    name: port.name.clone(),
                    first,
                },
            );
        } else {
            names.insert(&port.name, i);
        }

        let target = match port.target_port {
            None => Some(None),
            Some(t) => problems
                .port(format!("spec.ports[{i}].targetPort"), "targetPort", t)
                .map(Some),
        };

        if let (Some(number), Some(protocol), Some(target)) = (number, protocol, target) {
            ports.push(Port {
                number,
                protocol: protocol.transport,
                kind: protocol.kind,
                http2: protocol.http2,
                name: port.name.clone(),
                target,
            });
        }
    }
    ports
}

/// A name the entry's endpoints come from, and what DNS said of it.
#[derive(Debug, PartialEq)]
struct Lookup<'a> {
    name: &'a str,
    /// `None`: no answer yet; else how many addresses it gave.
    addresses: Option<usize>,
}

/// The endpoints with their IP addresses (for DNS resolution, the addresses the resolver
/// found for their names), and the names looked up. None is valid: a service with no
/// backend, whose connects are refused (as Istio answers 503), unless a route sends them
/// elsewhere.
fn endpoints<'a>(
    spec: &'a ServiceEntrySpec,
    resolution: Resolution,
    problems: &mut Problems,
) -> (Vec<Endpoint>, Vec<Lookup<'a>>) {
    if resolution == Resolution::None {
        // Any endpoint is an error of its own (see `check_settings`).
        return (Vec::new(), Vec::new());
    }
    let port_names: BTreeSet<&str> = spec.ports.iter().map(|p| p.name.as_str()).collect();
    let mut endpoints = Vec::with_capacity(spec.endpoints.len());
    let mut lookups = Vec::new();
    let answers = spec.resolved.as_deref();
    for (j, endpoint) in spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{j}].address");
        let address = &*endpoint.address;
        if address.is_empty() {
            problems.add(field, FieldError::Required { what: "address" });
        } else if let Ok(ip) = address.parse::<IpAddr>() {
            // IPv4-mapped is IPv4, as for VIPs: its family decides which VIPs it serves.
            endpoints.push(endpoint_of(endpoint, ip.to_canonical()));
        } else if resolution == Resolution::Static {
            // Istio also allows unix:// sockets here.
            problems.add(field, ServiceEntryError::EndpointNotIp(address.to_string()));
        } else if !is_dns_name(address) {
            problems.add(
                field,
                ServiceEntryError::EndpointNotIpOrName(address.to_string()),
            );
        } else {
            let found = resolved(answers, address, resolution);
            lookups.push(Lookup {
                name: address,
                addresses: found.as_ref().map(Vec::len),
            });
            endpoints.extend(
                found
                    .into_iter()
                    .flatten()
                    .map(|ip| endpoint_of(endpoint, ip)),
            );
        }
        for (name, &number) in endpoint.ports.iter() {
            let field = format!("spec.endpoints[{j}].ports.{name}");
            if !port_names.contains(name) {
                problems.add(
                    field,
                    ServiceEntryError::UnknownPortName {
                        name: name.to_string(),
                        ports: port_names.iter().copied().collect::<Vec<_>>().join(", "),
                    },
                );
            } else {
                problems.port(field, "port", number);
            }
        }
    }
    if spec.endpoints.is_empty()
        && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
    {
        // Istio's rule: with no endpoints, the hosts themselves are resolved (an endpoint
        // each, with no labels, at the service ports).
        let host_endpoint = WorkloadEntry::default();
        for (i, host) in spec.hosts.iter().enumerate() {
            if host.is_empty() || host == "*" {
                continue; // reported by check_hosts
            }
            if !is_dns_name(host) {
                problems.add(
                    format!("spec.hosts[{i}]"),
                    ServiceEntryError::HostNotResolvable(host.clone(), resolution.name()),
                );
                continue;
            }
            let found = resolved(answers, host, resolution);
            lookups.push(Lookup {
                name: host,
                addresses: found.as_ref().map(Vec::len),
            });
            let only: Arc<str> = Arc::from(host.as_str());
            endpoints.extend(found.into_iter().flatten().map(|ip| Endpoint {
                host: Some(only.clone()),
                ..endpoint_of(&host_endpoint, ip)
            }));
        }
    }
    (endpoints, lookups)
}

/// The addresses `name` stands for (`None`: no answer yet). DNS: all of them, sorted, so
/// that a server rotating its answers changes nothing; DNS_ROUND_ROBIN: the first of each
/// family, in the answer's order (a connect keeps its VIP's family).
fn resolved(
    answers: Option<&DnsAnswers>,
    name: &str,
    resolution: Resolution,
) -> Option<Vec<IpAddr>> {
    let answer = answers?.0.get(name)?;
    let canonical = answer.iter().map(|ip| ip.to_canonical());
    Some(match resolution {
        Resolution::DnsRoundRobin => {
            let v4 = canonical.clone().find(IpAddr::is_ipv4);
            let v6 = canonical.clone().find(IpAddr::is_ipv6);
            v4.into_iter().chain(v6).collect()
        }
        _ => {
            let all: BTreeSet<IpAddr> = canonical.collect();
            all.into_iter().collect()
        }
    })
}

/// What the user should know of the names looked up: those not answered yet, and those
/// with no address.
fn dns_notes(
    id: &ResourceId,
    resolution: Resolution,
    lookups: &[Lookup],
    resolver_ran: bool,
) -> Vec<String> {
    let pending: Vec<&str> = lookups
        .iter()
        .filter(|l| l.addresses.is_none())
        .map(|l| l.name)
        .collect();
    let empty: Vec<&str> = lookups
        .iter()
        .filter(|l| l.addresses == Some(0))
        .map(|l| l.name)
        .collect();
    let mut notes = Vec::new();
    if !pending.is_empty() {
        let why = if resolver_ran {
            "no answer from DNS yet; their endpoints are added when it answers"
        } else {
            "names are resolved by a running agent, not by `vsteer plan`, so they have no endpoints here"
        };
        notes.push(format!(
            "{id}: resolution {}: {} not resolved ({why})",
            resolution.name(),
            pending.join(", ")
        ));
    }
    if !empty.is_empty() {
        notes.push(format!(
            "{id}: {} resolved to no address (NXDOMAIN or no A/AAAA records), so no endpoints \
             from there until DNS gives some (as Envoy, which empties the host set)",
            empty.join(", ")
        ));
    }
    notes
}

fn endpoint_of(endpoint: &WorkloadEntry, address: IpAddr) -> Endpoint {
    Endpoint {
        address,
        ports: endpoint.ports.clone(),
        labels: endpoint.labels.clone(),
        weight: endpoint.weight.unwrap_or(1).max(1),
        locality: endpoint.locality.as_deref().map(Arc::from),
        host: None,
    }
}

/// The endpoint's own port for this service port, else the target port, else the port.
fn endpoint_port(own: Option<&u32>, port: &Port) -> u16 {
    own.and_then(|&n| port_number(n))
        .or(port.target)
        .unwrap_or(port.number)
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// What a port's protocol means for steering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortProtocol {
    transport: Protocol,
    kind: PortKind,
    http2: bool,
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
    let lower = name.to_ascii_lowercase();
    let http2 = matches!(lower.as_str(), "http2" | "grpc");
    let (transport, kind, names_host) = match lower.as_str() {
        "http" | "http2" | "http_proxy" | "grpc" | "grpc-web" => {
            (Protocol::Tcp, PortKind::Http, true)
        }
        "https" | "tls" => (Protocol::Tcp, PortKind::Tls, true),
        // An undeclared protocol is sniffed by Istio: HTTP rules for what speaks HTTP.
        "" => (Protocol::Tcp, PortKind::Sniffed, false),
        "tcp" | "mongo" | "redis" | "mysql" => (Protocol::Tcp, PortKind::Tcp, false),
        "udp" => (Protocol::Udp, PortKind::Udp, false),
        _ => return None,
    };
    Some(PortProtocol {
        transport,
        kind,
        http2,
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
        assert_eq!(kind("HTTPS"), Some(PortKind::Tls));
        assert_eq!(kind("MONGO"), Some(PortKind::Tcp));
        assert_eq!(kind("UDP"), Some(PortKind::Udp));
        for name in KNOWN_PROTOCOLS {
            assert!(parse_protocol(name).is_some(), "{name}");
        }
    }

    #[test]
    fn vips_are_addresses_or_ranges_in_one_spelling() {
        let net = |s: &str| -> IpNet { s.parse().unwrap() };
        assert_eq!(parse_vip("10.0.0.1"), Ok(net("10.0.0.1/32")));
        assert_eq!(parse_vip("10.0.0.1/32"), Ok(net("10.0.0.1/32")));
        assert_eq!(parse_vip("fd00::1/128"), Ok(net("fd00::1/128")));
        assert_eq!(parse_vip("::ffff:10.0.0.1"), Ok(net("10.0.0.1/32")));
        assert_eq!(parse_vip("::ffff:10.0.0.1/128"), Ok(net("10.0.0.1/32")));
        assert_eq!(parse_vip("::ffff:10.1.0.0/112"), Ok(net("10.1.0.0/16")));
        // Host bits are cleared, as Envoy reads the prefix.
        assert_eq!(parse_vip("10.1.2.3/16"), Ok(net("10.1.0.0/16")));
        assert_eq!(parse_vip("fd00::5/64"), Ok(net("fd00::/64")));
        assert!(
            parse_vip("10.0.0.0/33")
                .unwrap_err()
                .to_string()
                .contains("not an IP address or CIDR")
        );
        assert!(
            parse_vip("reviews")
                .unwrap_err()
                .to_string()
                .contains("not an IP")
        );
    }
}
