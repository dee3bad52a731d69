//! Where one service's connections go: the first rule of its VirtualService that matches
//! it, then that rule's weighted destinations; or, with no VirtualService, all endpoints
//! of its own host.

use std::net::IpAddr;

use super::destination_rule::{ForHost, Rules, selects};
use super::matching::{self, Decision};
use super::names::resolve_host;
use super::plan::{BackendPlan, LoadBalancer, ServiceKey, ServicePlan};
use super::registry::{Registry, show};
use super::service_entry::{Entry, Port, PortKind};
use super::weights::{Share, spread};
use crate::config::{Destination, Resource, Subset, VirtualServiceSpec};

/// A service's compiled state, and what to tell the user if it is used.
#[derive(Clone)]
pub(super) struct Routed {
    pub plan: ServicePlan,
    /// The destination hosts (whose DestinationRules shaped the result).
    pub hosts: Vec<String>,
    pub notes: Vec<String>,
}

/// Whether `route` (of a service plan) names a rule of the VirtualService `id`.
pub(super) fn routed_by(route: Option<&str>, id: &str) -> bool {
    route
        .and_then(|r| r.strip_prefix(id))
        .is_some_and(|rest| rest.starts_with(' '))
}

/// A field path and what is wrong there.
pub(super) type FieldError = (String, String);

/// All endpoints of the service's own host, equally: no VirtualService applies.
pub(super) fn default_route(entry: &Entry, key: ServiceKey, rules: &Rules) -> Routed {
    let (vip, number, _) = key;
    let host = entry.host().to_string();
    let for_host = rules.for_host(&host);
    let backends = match entry.port(number) {
        Some(port) => with_subsets(entry.backends(vip, port), &for_host),
        None => Vec::new(),
    };
    let mut notes = Vec::new();
    if backends.is_empty() {
        notes.push(format!(
            "{}: no backend, connects are refused: {} has no {} endpoint",
            show(&key),
            entry.id,
            family(key)
        ));
    }
    Routed {
        plan: ServicePlan {
            vip,
            port: number,
            protocol: key.2,
            host: host.clone(),
            resource: entry.id.clone(),
            route: None,
            load_balancer: for_host.load_balancer(None, number),
            backends: spread(vec![Share {
                weight: 1,
                backends,
            }]),
        },
        hosts: vec![host],
        notes,
    }
}

/// The route of the VirtualService `resource` for service `key` of `entry`. Errors are
/// those that only show for this service (a destination port that cannot be chosen for
/// it); the rest were checked for the whole resource before.
pub(super) fn route(
    resource: &Resource,
    spec: &VirtualServiceSpec,
    entry: &Entry,
    key: ServiceKey,
    registry: &Registry,
    rules: &Rules,
) -> Result<Routed, Vec<FieldError>> {
    let id = resource.id();
    let (vip, number, _) = key;
    let service = show(&key);
    let kind = entry.port(number).map(|p| p.kind);
    let (name, count) = match kind {
        Some(PortKind::Http) => ("http", spec.http.len()),
        Some(PortKind::Tcp) => ("tcp", spec.tcp.len()),
        Some(PortKind::Udp) | None => {
            let mut routed = default_route(entry, key, rules);
            routed.notes.push(format!(
                "{id}: does not route {service}: Istio does not proxy UDP, so its rules never apply; all endpoints are used"
            ));
            return Ok(routed);
        }
    };
    if count == 0 {
        let mut routed = default_route(entry, key, rules);
        routed.notes.push(format!(
            "{id}: has no {name} rules for {service} (a {} port); all endpoints are used",
            name.to_uppercase()
        ));
        return Ok(routed);
    }

    let mut notes = Vec::new();
    let chosen = match kind {
        Some(PortKind::Http) => first_http(spec, number, &id, &service, &mut notes),
        _ => first_tcp(spec, vip, number),
    };
    if let Some((rule, destinations)) = chosen {
        let mut routed =
            destinations_of(resource, &rule, &destinations, entry, key, registry, rules)?;
        notes.append(&mut routed.notes);
        routed.notes = notes;
        return Ok(routed);
    }

    // Istio sends nothing anywhere when no rule of the host matches; vsteer refuses.
    notes.push(format!(
        "{id}: no rule matches {service}: no backend, connects are refused"
    ));
    Ok(Routed {
        plan: ServicePlan {
            vip,
            port: number,
            protocol: key.2,
            host: entry.host().to_string(),
            resource: entry.id.clone(),
            route: Some(format!("{id} (no rule matches)")),
            load_balancer: LoadBalancer::default(),
            backends: Vec::new(),
        },
        hosts: Vec::new(),
        notes,
    })
}

/// A rule (`http[1]`) and its weighted destinations.
type Chosen<'s> = (String, Vec<(&'s Destination, Option<i32>)>);

/// The first HTTP rule that takes every connection to the service on `port`; rules that
/// need the L7 proxy are skipped with a note.
fn first_http<'s>(
    spec: &'s VirtualServiceSpec,
    port: u16,
    id: &str,
    service: &str,
    notes: &mut Vec<String>,
) -> Option<Chosen<'s>> {
    for (i, http) in spec.http.iter().enumerate() {
        match matching::http_rule(http, port) {
            Decision::NoMatch => continue,
            Decision::NeedsL7(reason) => {
                notes.push(format!(
                    "{id}: spec.http[{i}] ({reason}) needs the L7 proxy, not available yet: skipped for {service}"
                ));
                continue;
            }
            Decision::Matches => {}
        }
        let unapplied = matching::unapplied(http);
        if !unapplied.is_empty() {
            notes.push(format!(
                "{id}: spec.http[{i}]: {} not applied (no proxy), connections are still routed",
                unapplied.join(" and ")
            ));
        }
        let destinations = http.route.iter().map(|d| (&d.destination, d.weight));
        return Some((format!("http[{i}]"), destinations.collect()));
    }
    None
}

/// The first TCP rule that matches connections to `vip`:`port`.
fn first_tcp(spec: &VirtualServiceSpec, vip: IpAddr, port: u16) -> Option<Chosen<'_>> {
    let (i, tcp) = spec
        .tcp
        .iter()
        .enumerate()
        .find(|(_, tcp)| matching::tcp_rule(tcp, vip, port))?;
    let destinations = tcp.route.iter().map(|d| (&d.destination, d.weight));
    Some((format!("tcp[{i}]"), destinations.collect()))
}

/// The backends and load balancer of one matching rule.
fn destinations_of(
    resource: &Resource,
    rule: &str,
    destinations: &[(&Destination, Option<i32>)],
    entry: &Entry,
    key: ServiceKey,
    registry: &Registry,
    rules: &Rules,
) -> Result<Routed, Vec<FieldError>> {
    let id = resource.id();
    let service = show(&key);
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut shares = Vec::new();
    let mut hosts = Vec::new();
    let mut policies: Vec<(usize, LoadBalancer)> = Vec::new();
    for (j, &(destination, weight)) in destinations.iter().enumerate() {
        let field = format!("spec.{rule}.route[{j}].destination");
        let target = match target(
            destination,
            &resource.meta.namespace,
            &field,
            registry,
            rules,
        ) {
            Ok(target) => target,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        let port = match target.port.or_else(|| infer_port(target.entry, key.1)) {
            Some(port) => port,
            None => {
                let ports: Vec<String> = target
                    .entry
                    .ports
                    .iter()
                    .map(|p| p.number.to_string())
                    .collect();
                errors.push((
                    format!("{field}.port"),
                    format!(
                        "port required: host {} has several ports ({}) and none is {}",
                        target.host,
                        ports.join(", "),
                        key.1
                    ),
                ));
                continue;
            }
        };
        if port.protocol != key.2 {
            errors.push((
                format!("{field}.port"),
                format!(
                    "port {} of host {} is {}; a {} connection cannot be sent there",
                    port.number, target.host, port.protocol, key.2
                ),
            ));
            continue;
        }
        // With one destination Istio ignores the weight: it takes everything.
        let weight = if destinations.len() == 1 {
            100
        } else {
            u64::try_from(weight.unwrap_or(0)).unwrap_or(0)
        };
        let backends: Vec<_> = target
            .entry
            .backends(key.0, port)
            .into_iter()
            .filter(|b| target.subset.is_none_or(|s| selects(s, &b.labels)))
            .collect();
        let backends = with_subsets(backends, &target.rules);
        if weight > 0 {
            if backends.is_empty() {
                let what = match target.subset {
                    Some(s) => format!("subset {} of {}", s.name, target.host),
                    None => target.host.clone(),
                };
                notes.push(format!(
                    "{id}: spec.{rule}.route[{j}]: {what} has no {} endpoint for {service}; its share goes to the other destinations",
                    family(key)
                ));
            } else {
                let subset = target.subset.map(|s| s.name.as_str());
                policies.push((j, target.rules.load_balancer(subset, port.number)));
            }
        }
        hosts.push(target.host.clone());
        shares.push(Share { weight, backends });
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let backends = spread(shares);
    if backends.is_empty() {
        notes.push(format!(
            "{id}: spec.{rule} has no endpoint for {service}: no backend, connects are refused"
        ));
    }
    let load_balancer = policies.first().map(|&(_, lb)| lb).unwrap_or_default();
    if let Some(&(j, other)) = policies.iter().find(|&&(_, lb)| lb != load_balancer) {
        notes.push(format!(
            "{id}: spec.{rule}: its destinations have different load balancers ({load_balancer} and {other} at route[{j}]); {service} uses the first, {load_balancer}"
        ));
    }
    Ok(Routed {
        plan: ServicePlan {
            vip: key.0,
            port: key.1,
            protocol: key.2,
            host: entry.host().to_string(),
            resource: entry.id.clone(),
            route: Some(format!("{id} {rule}")),
            load_balancer,
            backends,
        },
        hosts,
        notes,
    })
}

/// A route destination, resolved and checked as far as it can be without knowing the
/// service it routes.
pub(super) struct Target<'r> {
    pub host: String,
    pub entry: &'r Entry<'r>,
    pub rules: ForHost<'r>,
    pub subset: Option<&'r Subset>,
    /// `destination.port`, when set.
    pub port: Option<&'r Port>,
}

/// Resolves `destination` (at `field`) written in `namespace`.
pub(super) fn target<'r>(
    destination: &Destination,
    namespace: &str,
    field: &str,
    registry: &'r Registry<'r>,
    rules: &Rules<'r>,
) -> Result<Target<'r>, Vec<FieldError>> {
    if destination.host.is_empty() {
        return Err(vec![(format!("{field}.host"), "host is required".into())]);
    }
    let host = resolve_host(&destination.host, namespace);
    let Some(entry) = registry.entry_for_host(&host) else {
        let why = match registry.rejected_hosts.get(&host) {
            Some(rejected) => format!(" ({rejected} has it but was rejected)"),
            None => String::new(),
        };
        return Err(vec![(
            format!("{field}.host"),
            format!("unknown host {host}: no ServiceEntry has it{why}"),
        )]);
    };
    let for_host = rules.for_host(&host);
    let mut errors = Vec::new();
    let subset = match destination.subset.as_deref() {
        None => None,
        Some(name) => {
            let subset = for_host.subset(name);
            if subset.is_none() {
                let why = match &for_host.rejected {
                    Some(rejected) => format!(" ({rejected} for this host was rejected)"),
                    None => String::new(),
                };
                errors.push((
                    format!("{field}.subset"),
                    format!(
                        "subset {name} not defined by any DestinationRule for host {host}{why}"
                    ),
                ));
            }
            subset
        }
    };
    let port = match destination.port.map(|p| p.number) {
        None => None,
        Some(number) => {
            let port = u16::try_from(number).ok().and_then(|n| entry.port(n));
            if port.is_none() {
                let ports: Vec<String> = entry.ports.iter().map(|p| p.number.to_string()).collect();
                errors.push((
                    format!("{field}.port.number"),
                    format!(
                        "host {host} has no port {number} (its ports: {})",
                        ports.join(", ")
                    ),
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
        entry,
        rules: for_host,
        subset,
        port,
    })
}

/// The destination port when the route names none: the one with the service's port number,
/// else the only one.
fn infer_port<'r>(entry: &'r Entry, number: u16) -> Option<&'r Port> {
    entry.port(number).or(match entry.ports.as_slice() {
        [only] => Some(only),
        _ => None,
    })
}

/// Fills in which subsets of the backends' host each backend belongs to.
fn with_subsets(mut backends: Vec<BackendPlan>, rules: &ForHost) -> Vec<BackendPlan> {
    for backend in &mut backends {
        backend.subsets = rules.subsets_of(&backend.labels);
    }
    backends
}

fn family(key: ServiceKey) -> &'static str {
    if key.0.is_ipv4() { "IPv4" } else { "IPv6" }
}
