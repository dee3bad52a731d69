//! VirtualServices: checked on their own (stage A: hosts, rules, weights, HTTP settings),
//! then resolved against the registry and the DestinationRules (stage C: each destination
//! once, the services covered, and the port of every destination for each of them).

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use vsteer_model::intern::Interner;
use vsteer_model::istio::{Destination, VirtualServiceSpec};
use vsteer_model::{Diagnostic, Precedence, Resource, ResourceId, ResourceSpec};
use vsteer_plan::{BackendPlan, Section, ServiceKey};

use crate::destination_rule::{ForHost, Rules};
use crate::http;
use crate::matching::MESH;
use crate::names::{host_match, resolve_host};
use crate::problems::{Problems, port_number};
use crate::registry::Registry;
use crate::routes;
use crate::service_entry::{Entry, Port};

/// What is wrong with a VirtualService.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VirtualServiceError {
    #[error("a rule needs a route, redirect, directResponse or delegate")]
    HttpRuleNeedsAction,
    #[error("a rule needs a route")]
    RuleNeedsRoute,
    #[error("a tls rule needs a match (Istio matches TLS connections by SNI)")]
    TlsNeedsMatch,
    #[error("a tls match needs at least one SNI host")]
    SniHostsRequired,
    #[error("{0:?} is not a host name or a wildcard of the form *.example.com or *")]
    SniPattern(String),
    #[error("{0:?} is not covered by any of the VirtualService's hosts (as Istio requires)")]
    SniOutsideHosts(String),
    #[error("{0:?} is not an IP address or CIDR")]
    NotASubnet(String),
    #[error("{text:?}: prefix length must be 0 to {max}")]
    PrefixLength { text: String, max: u8 },
    #[error("weight must not be negative, got {0}")]
    NegativeWeight(i32),
    #[error(
        "total destination weight = 0: with several destinations each gets weight / (sum of weights), an unset weight counting as 0, so at least one must be above 0"
    )]
    WeightsAllZero,
    #[error("host is required")]
    HostRequired,
    #[error(
        "subset {name} not defined for host {host} ({rejected} for this host was rejected): the VirtualService keeps its last good routes"
    )]
    SubsetOfRejectedRule {
        name: String,
        host: Arc<str>,
        rejected: String,
    },
    #[error("unknown host {host}: no ServiceEntry has it{why}")]
    UnknownHost { host: Arc<str>, why: String },
    #[error("host {host} has no port {number} (its ports: {ports})")]
    NoSuchPort {
        host: Arc<str>,
        number: u32,
        ports: String,
    },
    #[error("port required: host {host} has several ports ({ports}) and none is {port}")]
    PortRequired {
        host: Arc<str>,
        ports: String,
        port: u16,
    },
    #[error(
        "port {port} of host {host} is {protocol}; a {service} connection cannot be sent there"
    )]
    ProtocolMismatch {
        port: u16,
        host: Arc<str>,
        protocol: vsteer_plan::Protocol,
        service: vsteer_plan::Protocol,
    },
}

/// Where a destination is written in the spec.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// `spec.<section>[rule].route[index].destination`.
    Route {
        section: Section,
        rule: usize,
        index: usize,
    },
    /// `spec.http[rule].mirror`.
    Mirror { rule: usize },
    /// `spec.http[rule].mirrors[index].destination`.
    Mirrors { rule: usize, index: usize },
}

/// One destination of one rule, with its host resolved in the rule's namespace.
#[derive(Debug, Clone)]
pub struct DestinationRef {
    pub place: Place,
    pub host: Arc<str>,
    pub subset: Option<String>,
    pub port: Option<u32>,
    pub weight: Option<i32>,
}

impl DestinationRef {
    /// The field path, e.g. `spec.http[0].route[1].destination` (built for messages only:
    /// one string per destination of every VirtualService would be much of its memory).
    pub fn field(&self) -> String {
        match self.place {
            Place::Route {
                section,
                rule,
                index,
            } => format!("spec.{section}[{rule}].route[{index}].destination"),
            Place::Mirror { rule } => format!("spec.http[{rule}].mirror"),
            Place::Mirrors { rule, index } => {
                format!("spec.http[{rule}].mirrors[{index}].destination")
            }
        }
    }
}

/// A VirtualService, checked on its own.
pub struct VirtualService {
    pub id: ResourceId,
    pub precedence: Precedence,
    resource: Arc<Resource>,
    /// Whether it applies to the mesh (the node's own connects); one for gateways only is
    /// left out.
    pub mesh: bool,
    /// `spec.hosts` resolved in the resource's namespace.
    pub hosts: Vec<Arc<str>>,
    pub errors: Vec<Diagnostic>,
    pub notes: Vec<String>,
    /// Every route destination of every rule, rule by rule.
    pub destinations: Vec<DestinationRef>,
    /// The part of `destinations` each `http`, `tls` and `tcp` rule owns.
    pub http_destinations: Vec<Range<usize>>,
    pub tls_destinations: Vec<Range<usize>>,
    pub tcp_destinations: Vec<Range<usize>>,
    /// Where HTTP rules send copies of their requests.
    pub mirrors: Vec<MirrorRef>,
}

/// A mirror of HTTP rule `rule`.
#[derive(Debug, Clone)]
pub struct MirrorRef {
    pub rule: usize,
    pub destination: DestinationRef,
    /// Of the rule's requests, 0.0 to 100.0.
    pub percent: f64,
}

static NO_SPEC: VirtualServiceSpec = VirtualServiceSpec {
    hosts: Vec::new(),
    gateways: Vec::new(),
    http: Vec::new(),
    tls: Vec::new(),
    tcp: Vec::new(),
    export_to: Vec::new(),
};

impl VirtualService {
    pub fn spec(&self) -> &VirtualServiceSpec {
        match &self.resource.spec {
            ResourceSpec::VirtualService(spec) => spec,
            _ => &NO_SPEC,
        }
    }

    /// Whether a host pattern is a wildcard, which covers services by suffix.
    pub fn has_wildcard(&self) -> bool {
        self.hosts.iter().any(|h| h.starts_with('*'))
    }

    /// How specifically it covers `key`, a service of `entry` (`None`: not at all), as
    /// Envoy picks a virtual host: the VIP itself or an exact name beats a longer wildcard,
    /// which beats a shorter one. An IP host names one address: never a range, even one
    /// whose network address it is.
    pub fn covers(&self, entry: &Entry, key: &ServiceKey) -> Option<usize> {
        self.hosts
            .iter()
            .filter_map(|pattern| {
                if key.prefix_len.is_none() && pattern.parse::<IpAddr>() == Ok(key.vip) {
                    return Some(usize::MAX);
                }
                entry
                    .hosts
                    .iter()
                    .filter_map(|h| host_match(pattern, h))
                    .max()
            })
            .max()
    }

    /// The destinations of rule `index` of `section`.
    pub fn rule_destinations(&self, section: Section, index: usize) -> Range<usize> {
        let ranges = match section {
            Section::Http => &self.http_destinations,
            Section::Tls => &self.tls_destinations,
            Section::Tcp => &self.tcp_destinations,
        };
        ranges.get(index).cloned().unwrap_or(0..0)
    }
}

/// Stage A: what can be judged from the VirtualService alone.
pub fn compile(resource: &Arc<Resource>, interner: &Interner) -> VirtualService {
    let mut vs = VirtualService {
        id: resource.id.clone(),
        precedence: resource.precedence.clone(),
        resource: resource.clone(),
        mesh: true,
        hosts: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        destinations: Vec::new(),
        http_destinations: Vec::new(),
        tls_destinations: Vec::new(),
        tcp_destinations: Vec::new(),
        mirrors: Vec::new(),
    };
    let ResourceSpec::VirtualService(spec) = &resource.spec else {
        vs.mesh = false;
        return vs;
    };
    let id = &resource.id;
    let delegate = crate::delegate::is_delegate(spec);
    if delegate {
        vs.notes.push(format!(
            "{id}: no hosts: a delegate, its http rules apply only where a root \
             VirtualService's rule delegates to it"
        ));
        let unread = [
            ("gateways", !spec.gateways.is_empty()),
            ("tls", !spec.tls.is_empty()),
            ("tcp", !spec.tcp.is_empty()),
        ];
        for (field, _) in unread.iter().filter(|(_, set)| *set) {
            vs.notes.push(format!(
                "{id}: spec.{field}: a delegate's {field} are not read (Istio's validation \
                 refuses them; the root's apply): ignored"
            ));
        }
    } else if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == MESH) {
        vs.notes.push(format!(
            "{id}: applies only to gateways ({}), not to mesh traffic: skipped",
            spec.gateways.join(", ")
        ));
        vs.mesh = false;
        return vs;
    }
    vs.notes.extend(crate::export_to::note(
        id,
        resource.namespace(),
        &spec.export_to,
    ));
    vs.hosts = spec
        .hosts
        .iter()
        .map(|h| interner.get(&resolve_host(h, resource.namespace())))
        .collect();
    let mut problems = Problems::new(resource);
    // Istio's own rule: `*` would capture every service of the mesh.
    if !delegate {
        problems.check_hosts(&spec.hosts, "for a VirtualService that applies to the mesh");
    }
    for (i, rule) in spec.http.iter().enumerate() {
        let field = format!("spec.http[{i}]");
        let acts =
            rule.redirect.is_some() || rule.direct_response.is_some() || rule.delegate.is_some();
        if rule.route.is_empty() && !acts {
            problems.add(
                format!("{field}.route"),
                VirtualServiceError::HttpRuleNeedsAction,
            );
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let field = format!("{field}.match[{k}]");
            check_port(m.port, &field, &mut problems);
            note_source(
                &vs.id,
                &field,
                [
                    ("sourceLabels", !m.source_labels.is_empty()),
                    ("sourceNamespace", m.source_namespace.is_some()),
                    ("sourceSubnet", false),
                ],
                &mut vs.notes,
            );
        }
        http::check_rule(rule, &field, &mut problems);
        let route = rule.route.iter().map(|d| (&d.destination, d.weight));
        let range = route_destinations(
            &mut vs,
            route,
            (Section::Http, i),
            &field,
            &mut problems,
            (resource.namespace(), interner),
        );
        vs.http_destinations.push(range);
        let legacy = rule
            .mirror_percentage
            .map(|p| p.value)
            .or(rule.mirror_percent.map(f64::from))
            .unwrap_or(100.0);
        if let Some(mirror) = &rule.mirror {
            vs.mirrors.push(MirrorRef {
                rule: i,
                destination: destination_ref(
                    mirror,
                    None,
                    Place::Mirror { rule: i },
                    resource.namespace(),
                    interner,
                ),
                percent: legacy,
            });
        }
        for (m, mirror) in rule.mirrors.iter().enumerate() {
            vs.mirrors.push(MirrorRef {
                rule: i,
                destination: destination_ref(
                    &mirror.destination,
                    None,
                    Place::Mirrors { rule: i, index: m },
                    resource.namespace(),
                    interner,
                ),
                percent: mirror.percentage.map(|p| p.value).unwrap_or(100.0),
            });
        }
    }
    let tls = if delegate { &[][..] } else { &spec.tls[..] };
    for (i, rule) in tls.iter().enumerate() {
        let field = format!("spec.tls[{i}]");
        if rule.route.is_empty() {
            problems.add(
                format!("{field}.route"),
                VirtualServiceError::RuleNeedsRoute,
            );
        }
        if rule.matches.is_empty() {
            problems.add(format!("{field}.match"), VirtualServiceError::TlsNeedsMatch);
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let field = format!("{field}.match[{k}]");
            if m.sni_hosts.is_empty() {
                problems.add(
                    format!("{field}.sniHosts"),
                    VirtualServiceError::SniHostsRequired,
                );
            }
            for (h, sni) in m.sni_hosts.iter().enumerate() {
                let sni_field = format!("{field}.sniHosts[{h}]");
                let wildcard_ok = match sni.strip_prefix('*') {
                    None => !sni.contains('*'),
                    Some(rest) => rest.is_empty() || (rest.starts_with('.') && !rest.contains('*')),
                };
                if sni.is_empty() || !wildcard_ok {
                    problems.add(sni_field, VirtualServiceError::SniPattern(sni.clone()));
                } else if !spec
                    .hosts
                    .iter()
                    .map(String::as_str)
                    .chain(vs.hosts.iter().map(|h| &**h))
                    .any(|host| crate::names::host_match(host, sni).is_some())
                {
                    // Istio's validation: an SNI the VirtualService's hosts do not cover.
                    problems.add(sni_field, VirtualServiceError::SniOutsideHosts(sni.clone()));
                }
            }
            let source = [
                ("sourceLabels", !m.source_labels.is_empty()),
                ("sourceNamespace", m.source_namespace.is_some()),
                ("sourceSubnet", false),
            ];
            check_l4_match(
                &mut vs,
                &field,
                m.port,
                source,
                &m.destination_subnets,
                &mut problems,
            );
        }
        let route = rule.route.iter().map(|d| (&d.destination, d.weight));
        let range = route_destinations(
            &mut vs,
            route,
            (Section::Tls, i),
            &field,
            &mut problems,
            (resource.namespace(), interner),
        );
        vs.tls_destinations.push(range);
    }
    let tcp = if delegate { &[][..] } else { &spec.tcp[..] };
    for (i, rule) in tcp.iter().enumerate() {
        let field = format!("spec.tcp[{i}]");
        if rule.route.is_empty() {
            problems.add(
                format!("{field}.route"),
                VirtualServiceError::RuleNeedsRoute,
            );
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let field = format!("{field}.match[{k}]");
            let source = [
                ("sourceLabels", !m.source_labels.is_empty()),
                ("sourceNamespace", m.source_namespace.is_some()),
                ("sourceSubnet", m.source_subnet.is_some()),
            ];
            check_l4_match(
                &mut vs,
                &field,
                m.port,
                source,
                &m.destination_subnets,
                &mut problems,
            );
        }
        let route = rule.route.iter().map(|d| (&d.destination, d.weight));
        let range = route_destinations(
            &mut vs,
            route,
            (Section::Tcp, i),
            &field,
            &mut problems,
            (resource.namespace(), interner),
        );
        vs.tcp_destinations.push(range);
    }
    vs.errors = problems.errors;
    vs.destinations.shrink_to_fit();
    vs.mirrors.shrink_to_fit();
    vs
}

/// Checks the weights of a rule's route at `field` and records its destinations (of rule
/// `at` = (section, index)), resolved in `names` = (namespace, interner); their range.
fn route_destinations<'d>(
    vs: &mut VirtualService,
    route: impl Iterator<Item = (&'d Destination, Option<i32>)> + Clone,
    at: (Section, usize),
    field: &str,
    problems: &mut Problems,
    names: (&str, &Interner),
) -> Range<usize> {
    let weights: Vec<Option<i32>> = route.clone().map(|(_, w)| w).collect();
    check_weights(field, &weights, problems);
    let start = vs.destinations.len();
    for (j, (destination, weight)) in route.enumerate() {
        vs.destinations.push(destination_ref(
            destination,
            weight,
            Place::Route {
                section: at.0,
                rule: at.1,
                index: j,
            },
            names.0,
            names.1,
        ));
    }
    start..vs.destinations.len()
}

/// Checks a `tls` or `tcp` match block at `field`: its port, its destination subnets, and
/// a note for each source condition (`source`: name, set).
fn check_l4_match(
    vs: &mut VirtualService,
    field: &str,
    port: Option<u32>,
    source: [(&str, bool); 3],
    destination_subnets: &[String],
    problems: &mut Problems,
) {
    check_port(port, field, problems);
    note_source(&vs.id, field, source, &mut vs.notes);
    for (s, subnet) in destination_subnets.iter().enumerate() {
        if let Err(error) = crate::subnet::parse(subnet) {
            problems.add(format!("{field}.destinationSubnets[{s}]"), error);
        }
    }
}

fn destination_ref(
    destination: &Destination,
    weight: Option<i32>,
    place: Place,
    namespace: &str,
    interner: &Interner,
) -> DestinationRef {
    DestinationRef {
        place,
        host: interner.get(&resolve_host(&destination.host, namespace)),
        subset: destination.subset.clone(),
        port: destination.port.map(|p| p.number),
        weight,
    }
}

fn check_port(port: Option<u32>, field: &str, problems: &mut Problems) {
    if let Some(n) = port {
        problems.port(format!("{field}.port"), "port", n);
    }
}

/// Conditions on the connecting workload: vsteer does not know the client's pod labels,
/// namespace or address yet, so such a match block matches no client (see `matching`); the
/// rest of the VirtualService applies, as Istio keeps it for clients that do not fit.
fn note_source(
    id: &ResourceId,
    field: &str,
    conditions: [(&str, bool); 3],
    notes: &mut Vec<String>,
) {
    for (name, set) in conditions {
        if set {
            notes.push(format!(
                "{id}: {field}.{name}: matches no client (vsteer does not know the connecting workload's {} yet); the rest of the VirtualService applies",
                match name {
                    "sourceLabels" => "labels",
                    "sourceNamespace" => "namespace",
                    _ => "address",
                }
            ));
        }
    }
}

/// Weights are relative, as in Istio's current API: a destination gets weight / (sum of
/// weights), an unset weight counting as 0 when several destinations are listed; only an
/// all-zero total (Istio's "total destination weight = 0") and negative weights are invalid.
/// (Istio's old rule that weights sum to 100 is gone from its validation.)
fn check_weights(field: &str, weights: &[Option<i32>], problems: &mut Problems) {
    for (j, weight) in weights.iter().enumerate() {
        if let Some(w) = weight
            && *w < 0
        {
            problems.add(
                format!("{field}.route[{j}].weight"),
                VirtualServiceError::NegativeWeight(*w),
            );
        }
    }
    if weights.len() < 2 {
        return;
    }
    let sum: i64 = weights
        .iter()
        .map(|w| i64::from(w.unwrap_or(0).max(0)))
        .sum();
    if sum == 0 {
        problems.add(
            format!("{field}.route"),
            VirtualServiceError::WeightsAllZero,
        );
    }
}

/// A route destination, resolved and checked as far as it can be without knowing the
/// service it routes.
#[derive(Clone)]
pub struct Target {
    pub host: Arc<str>,
    pub entry: Arc<Entry>,
    pub rules: ForHost,
    pub subset: Option<vsteer_model::istio::Subset>,
    /// A subset the destination names that no DestinationRule defines: Istio keeps the
    /// route and Envoy answers 503 for its share (no such cluster); it selects nothing.
    pub missing_subset: Option<String>,
    /// `destination.port`, when set (a port of `entry`).
    pub port: Option<u16>,
}

impl Target {
    /// The subset's name, defined or not.
    pub fn subset_name(&self) -> Option<&str> {
        self.missing_subset
            .as_deref()
            .or(self.subset.as_ref().map(|s| &*s.name))
    }

    /// Whether `backend` (an endpoint, with its labels) belongs to this destination.
    pub fn selects(&self, backend: &BackendPlan) -> bool {
        if self.missing_subset.is_some() {
            return false;
        }
        // Istio's subset cluster of a NONE host is ORIGINAL_DST as the host's: no endpoints
        // to select, every connect to the address dialled.
        if backend.is_passthrough() {
            return true;
        }
        let labels = &backend.labels;
        self.subset
            .as_ref()
            .is_none_or(|s| crate::destination_rule::selects(s, labels))
    }

    /// The entry's port `destination.port` names.
    pub fn named_port(&self) -> Option<&Port> {
        self.port.and_then(|n| self.entry.port(n))
    }
}

/// Stage C: a VirtualService against the registry and the DestinationRules.
pub struct Resolved {
    /// Parallel to `VirtualService::destinations`; `None` where the destination is wrong.
    pub targets: Vec<Option<Target>>,
    /// Parallel to `VirtualService::mirrors`; `None` where the mirror names nothing known
    /// (its copies are dropped, as Envoy drops them).
    pub mirror_targets: Vec<Option<Target>>,
    /// Every service it covers and how specifically.
    pub covered: Vec<(ServiceKey, usize)>,
    /// Errors only the rest of the config shows.
    pub errors: Vec<Diagnostic>,
    pub notes: Vec<String>,
    /// No error, alone or in context: it routes what it covers.
    pub valid: bool,
}

/// Resolves `vs` (stage C).
pub fn resolve(vs: &VirtualService, registry: &Registry, rules: &Rules) -> Resolved {
    let mut resolved = Resolved {
        targets: Vec::new(),
        mirror_targets: Vec::new(),
        covered: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        valid: false,
    };
    if !vs.mesh {
        return resolved;
    }
    let mut problems = Problems::new(&vs.resource);
    for destination in &vs.destinations {
        match target(destination, registry, rules) {
            Ok(target) => {
                if let Some(name) = &target.missing_subset {
                    resolved.notes.push(format!(
                        "{}: {}.subset: subset {name} not defined by any DestinationRule for host {}; its share is refused at connect time (Envoy answers 503: no such cluster)",
                        vs.id,
                        destination.field(),
                        target.host
                    ));
                }
                resolved.targets.push(Some(target));
            }
            Err(errors) => {
                for (field, error) in errors {
                    problems.add(field, error);
                }
                resolved.targets.push(None);
            }
        }
    }
    for mirror in &vs.mirrors {
        match target(&mirror.destination, registry, rules) {
            Ok(target) => resolved.mirror_targets.push(Some(target)),
            Err(errors) => {
                for (field, error) in errors {
                    resolved.notes.push(format!(
                        "{}: {field}: {error}; its copies are dropped",
                        vs.id
                    ));
                }
                resolved.mirror_targets.push(None);
            }
        }
    }
    resolved.covered = covered(vs, registry);
    if vs.errors.is_empty() && problems.is_empty() {
        for &(key, _) in &resolved.covered {
            let Some(entry) = registry
                .owner(&key)
                .and_then(|o| registry.entries.get(o.id()))
                .and_then(|s| s.entry())
            else {
                continue;
            };
            for (field, error) in routes::port_errors(vs, &resolved.targets, entry, key) {
                problems.add(field, error);
            }
        }
    }
    resolved.targets.shrink_to_fit();
    resolved.mirror_targets.shrink_to_fit();
    resolved.covered.shrink_to_fit();
    resolved.valid = vs.errors.is_empty() && problems.is_empty();
    resolved.errors = problems.errors;
    // A delegate (no hosts) covers nothing by itself: its own note says where it applies.
    if resolved.valid && resolved.covered.is_empty() && !vs.hosts.is_empty() {
        resolved.notes.push(format!(
            "{}: hosts {} match no ServiceEntry service; it routes nothing",
            vs.id,
            vs.hosts.join(", ")
        ));
    }
    resolved
}

/// The services `vs` covers: by host for names, by VIP for IPs, by suffix for wildcards.
fn covered(vs: &VirtualService, registry: &Registry) -> Vec<(ServiceKey, usize)> {
    let mut keys: Vec<ServiceKey> = if vs.has_wildcard() {
        registry.keys().copied().collect()
    } else {
        vs.hosts
            .iter()
            .flat_map(|pattern| match pattern.parse::<IpAddr>() {
                Ok(ip) => registry.services_at(ip).copied().collect(),
                Err(_) => registry.services_of_host(pattern),
            })
            .collect()
    };
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let entry = registry
                .owner(&key)
                .and_then(|o| registry.entries.get(o.id()))
                .and_then(|s| s.entry())?;
            vs.covers(entry, &key).map(|score| (key, score))
        })
        .collect()
}

/// Resolves one destination.
fn target(
    destination: &DestinationRef,
    registry: &Registry,
    rules: &Rules,
) -> Result<Target, Vec<(String, VirtualServiceError)>> {
    let field = &destination.field();
    if destination.host.is_empty() {
        return Err(vec![(
            format!("{field}.host"),
            VirtualServiceError::HostRequired,
        )]);
    }
    let host = destination.host.clone();
    let Some(entry) = registry.entry_for_host(&host) else {
        let why = match registry.rejected_for_host(&host) {
            Some(rejected) => format!(" ({rejected} has it but was rejected)"),
            None => String::new(),
        };
        return Err(vec![(
            format!("{field}.host"),
            VirtualServiceError::UnknownHost { host, why },
        )]);
    };
    let for_host = rules.for_host(&host);
    let mut errors = Vec::new();
    let mut missing_subset = None;
    let subset = match destination.subset.as_deref() {
        None => None,
        Some(name) => {
            let subset = for_host.subset(name).cloned();
            if subset.is_none() {
                match &for_host.rejected {
                    // Bad input, not a config that routes to nothing: the VirtualService
                    // waits with its last good routes until the rule is fixed.
                    Some(rejected) => errors.push((
                        format!("{field}.subset"),
                        VirtualServiceError::SubsetOfRejectedRule {
                            name: name.to_string(),
                            host: host.clone(),
                            rejected: rejected.to_string(),
                        },
                    )),
                    None => missing_subset = Some(name.to_string()),
                }
            }
            subset
        }
    };
    let port = match destination.port {
        None => None,
        Some(number) => {
            let port = port_number(number).filter(|&n| entry.port(n).is_some());
            if port.is_none() {
                errors.push((
                    format!("{field}.port.number"),
                    VirtualServiceError::NoSuchPort {
                        host: host.clone(),
                        number,
                        ports: port_list(entry),
                    },
                ));
            }
            port
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Target {
        host,
        entry: entry.clone(),
        rules: for_host,
        subset,
        missing_subset,
        port,
    })
}

pub fn port_list(entry: &Entry) -> String {
    entry
        .ports
        .iter()
        .map(|p| p.number.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
