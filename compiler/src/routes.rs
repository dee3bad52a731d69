//! Where one service's connections go: the first rule of the VirtualService that applies
//! to it, then that rule's weighted destinations; or, with no VirtualService, all endpoints
//! of its own host. Built only for the VirtualService that wins the service, from the
//! destinations it resolved once.

use std::sync::Arc;

use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, RouteRef, RuleRef, Section, ServiceKey, ServicePlan,
};

use crate::destination_rule::{ForHost, Rules};
use crate::matching;
use crate::service_entry::{Entry, Port, PortKind};
use crate::subnet;
use crate::virtual_service::{Target, VirtualService, VirtualServiceError, port_list};
use crate::weights::{Share, spread};

/// A service's compiled state, and what to tell the user if it is used.
#[derive(Clone, Debug)]
pub struct Routed {
    pub plan: ServicePlan,
    /// The destination hosts (whose ServiceEntries and DestinationRules shaped the result).
    pub hosts: Vec<Arc<str>>,
    pub notes: Vec<String>,
}

/// All endpoints of the service's own host, equally: no VirtualService applies.
pub fn default_route(entry: &Entry, key: ServiceKey, rules: &Rules) -> Routed {
    let host = entry.host().clone();
    let for_host = rules.for_host(&host);
    let backends = match entry.port(key.port) {
        Some(port) => with_subsets(
            for_host.locality_weighted(
                None,
                port.number,
                entry.located_backends(key.vip, port, &host),
            ),
            &for_host,
        ),
        None => Vec::new(),
    };
    let mut notes = Vec::new();
    if backends.is_empty() {
        notes.push(format!(
            "{key}: no backend, connects are refused: {} has no {} endpoint",
            entry.id,
            family(key)
        ));
    }
    Routed {
        plan: ServicePlan {
            key,
            host: host.clone(),
            resource: entry.id.clone(),
            route: None,
            load_balancer: for_host.load_balancer(None, key.port),
            backends: spread(vec![Share {
                weight: 1,
                backends,
            }]),
            decision: Decision::Kernel,
            http: None,
        },
        hosts: vec![host],
        notes,
    }
}

/// The rule of `vs` that takes a service's connections at connect time.
pub struct Chosen {
    pub section: Section,
    pub index: usize,
}

/// Which section of `vs` routes a port of this kind, and the first rule of it that takes
/// every connection to `key`. `Err` carries the note when no section applies.
pub fn choose(
    vs: &VirtualService,
    kind: Option<PortKind>,
    key: ServiceKey,
) -> Result<Option<Chosen>, String> {
    let id = &vs.id;
    let spec = vs.spec();
    let (section, count) = match kind {
        Some(PortKind::Http) => (Section::Http, spec.http.len()),
        // A sniffed port's connect-time route (and its route for what is not HTTP) is the
        // tcp rules', as Istio's TCP filter chain after the HTTP one.
        Some(PortKind::Tcp | PortKind::Sniffed) => (Section::Tcp, spec.tcp.len()),
        // Istio builds no TCP filter chain for a TLS port: tcp rules never apply there, and
        // what no tls rule takes goes to the service's own chain (all endpoints).
        Some(PortKind::Tls) => {
            let tcp = if spec.tcp.is_empty() {
                ""
            } else {
                "; its tcp rules do not apply to a TLS port, as in Istio"
            };
            return Err(format!(
                "{id}: {key} is a TLS port: at connect time, and for connections no tls rule takes, all endpoints are used{tcp}"
            ));
        }
        Some(PortKind::Udp) | None => {
            return Err(format!(
                "{id}: does not route {key}: Istio does not proxy UDP, so its rules never apply; all endpoints are used"
            ));
        }
    };
    if count == 0 {
        return Err(format!(
            "{id}: has no {section} rules for {key} (a {} port); all endpoints are used",
            section.as_str().to_uppercase()
        ));
    }
    let chosen = if section == Section::Tcp {
        spec.tcp
            .iter()
            .position(|tcp| matching::tcp_rule(tcp, &key))
    } else {
        // Rules that look into requests are the proxy's (see `http::table`); at connect time
        // the first rule that takes every request decides, whatever its actions.
        spec.http
            .iter()
            .position(|http| matching::takes_every_request(http, key.port))
    };
    Ok(chosen.map(|index| Chosen { section, index }))
}

/// The errors of the rule `vs` chooses for `key` that only show for that service: a
/// destination port that cannot be chosen for it.
pub fn port_errors(
    vs: &VirtualService,
    targets: &[Option<Target>],
    entry: &Entry,
    key: ServiceKey,
) -> Vec<(String, VirtualServiceError)> {
    let kind = entry.port(key.port).map(|p| p.kind);
    let Ok(Some(chosen)) = choose(vs, kind, key) else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for i in vs.rule_destinations(chosen.section, chosen.index) {
        let (Some(Some(target)), Some(destination)) = (targets.get(i), vs.destinations.get(i))
        else {
            continue;
        };
        if let Err(error) = target_port(target, key) {
            errors.push((format!("{}.port", destination.field()), error));
        }
    }
    errors
}

/// The port of `target` a connection to `key` goes to.
fn target_port(target: &Target, key: ServiceKey) -> Result<&Port, VirtualServiceError> {
    let port = target
        .named_port()
        .or_else(|| infer_port(&target.entry, key.port))
        .ok_or_else(|| VirtualServiceError::PortRequired {
            host: target.host.clone(),
            ports: port_list(&target.entry),
            port: key.port,
        })?;
    if port.protocol != key.protocol {
        return Err(VirtualServiceError::ProtocolMismatch {
            port: port.number,
            host: target.host.clone(),
            protocol: port.protocol,
            service: key.protocol,
        });
    }
    Ok(port)
}

/// The route of `vs` (which won the service) for service `key` of `entry`.
pub fn route(
    vs: &VirtualService,
    targets: &[Option<Target>],
    entry: &Entry,
    key: ServiceKey,
    rules: &Rules,
) -> Routed {
    let mut routed = route_by_rules(vs, targets, entry, key, rules);
    routed.notes.extend(split_range_notes(vs, key));
    routed
}

/// Notes for the destination subnets of `vs` that hold part of `key`'s range, in match
/// blocks that would otherwise apply and do not take the range by another subnet: Istio
/// gives such a subnet a filter chain of its own, more specific than the range's, so the
/// rule takes those addresses; vsteer gives a range one route, chosen by the rules that
/// take all of it.
fn split_range_notes(vs: &VirtualService, key: ServiceKey) -> Vec<String> {
    if key.prefix_len.is_none() {
        return Vec::new();
    }
    let spec = vs.spec();
    let tcp = spec.tcp.iter().enumerate().flat_map(|(i, rule)| {
        rule.matches
            .iter()
            .enumerate()
            .filter(|(_, m)| matching::l4_holds_but_subnets(m, key.port))
            .map(move |(k, m)| (format!("tcp[{i}].match[{k}]"), &m.destination_subnets))
    });
    let tls = spec.tls.iter().enumerate().flat_map(|(i, rule)| {
        rule.matches
            .iter()
            .enumerate()
            .filter(|(_, m)| m.port.is_none_or(|p| p == u32::from(key.port)))
            .map(move |(k, m)| (format!("tls[{i}].match[{k}]"), &m.destination_subnets))
    });
    let mut notes = Vec::new();
    for (field, subnets) in tcp.chain(tls) {
        if subnets.iter().any(|s| subnet::takes(s, &key)) {
            continue;
        }
        for (s, subnet) in subnets.iter().enumerate() {
            if subnet::splits(subnet, &key) {
                notes.push(format!(
                    "{id}: spec.{field}.destinationSubnets[{s}] {subnet} is part of the range of {key}: vsteer routes a range as one service, so this match does not take it (Istio applies it to the addresses of {subnet}); to route them apart, give {subnet} a ServiceEntry address of its own",
                    id = vs.id
                ));
            }
        }
    }
    notes
}

fn route_by_rules(
    vs: &VirtualService,
    targets: &[Option<Target>],
    entry: &Entry,
    key: ServiceKey,
    rules: &Rules,
) -> Routed {
    let id = &vs.id;
    let kind = entry.port(key.port).map(|p| p.kind);
    let chosen = match choose(vs, kind, key) {
        Ok(chosen) => chosen,
        Err(note) => {
            let mut routed = default_route(entry, key, rules);
            routed.notes.push(note);
            return routed;
        }
    };
    let spec = vs.spec();
    let none_applies = match kind {
        Some(PortKind::Tcp | PortKind::Tls | PortKind::Sniffed) => true,
        Some(PortKind::Http) => !spec
            .http
            .iter()
            .any(|r| matching::http_applies(r, key.port)),
        _ => false,
    };
    if chosen.is_none() && none_applies {
        // Istio builds the VirtualService's routes per port; a port none of them applies to
        // gets the service's own default route (its cluster: all endpoints).
        let mut routed = default_route(entry, key, rules);
        routed.notes.push(format!(
            "{id}: no {} rule applies to {key}; Istio's default route: all endpoints of {}",
            kind.map_or("", |k| if k == PortKind::Http { "http" } else { "tcp" }),
            entry.host()
        ));
        return routed;
    }
    let Some(chosen) = chosen else {
        // HTTP rules apply but none takes every request: the proxy serves them (and answers
        // 404 where none matches, as Envoy); at connect time nothing is left to take it.
        return Routed {
            plan: ServicePlan {
                key,
                host: entry.host().clone(),
                resource: entry.id.clone(),
                route: Some(RouteRef {
                    resource: id.clone(),
                    rule: RuleRef::NoMatch,
                }),
                load_balancer: LoadBalancer::default(),
                backends: Vec::new(),
                decision: Decision::Kernel,
                http: None,
            },
            hosts: Vec::new(),
            notes: vec![format!(
                "{id}: no rule matches {key}: no backend, connects are refused"
            )],
        };
    };
    let mut notes = Vec::new();
    let rule = format!("{}[{}]", chosen.section, chosen.index);
    let range = vs.rule_destinations(chosen.section, chosen.index);
    let count = range.len();
    let mut shares = Vec::new();
    let mut hosts = Vec::new();
    let mut policies: Vec<(usize, LoadBalancer)> = Vec::new();
    for (j, i) in range.enumerate() {
        let (Some(Some(target)), Some(destination)) = (targets.get(i), vs.destinations.get(i))
        else {
            continue;
        };
        // Checked for every covered service when the VirtualService was resolved.
        let Ok(port) = target_port(target, key) else {
            continue;
        };
        // With one destination Istio ignores the weight: it takes everything.
        let weight = if count == 1 {
            100
        } else {
            u64::try_from(destination.weight.unwrap_or(0)).unwrap_or(0)
        };
        let located: Vec<_> = target
            .entry
            .located_backends(key.vip, port, &target.host)
            .into_iter()
            .filter(|(b, _)| target.selects(b))
            .collect();
        let subset = target.subset.as_ref().map(|s| &*s.name);
        // A subset no DestinationRule defines has no cluster, whatever the host's policy.
        let backends = if target.missing_subset.is_some() {
            Vec::new()
        } else {
            target.rules.locality_weighted(subset, port.number, located)
        };
        let mut backends = with_subsets(backends, &target.rules);
        if weight > 0 {
            if backends.is_empty() {
                // Envoy answers 503 for a share whose cluster has no endpoint (or does not
                // exist); at connect time that share is refused.
                if target.missing_subset.is_none() {
                    let what = match &target.subset {
                        Some(s) => format!("subset {} of {}", s.name, target.host),
                        None => target.host.to_string(),
                    };
                    notes.push(format!(
                        "{id}: spec.{rule}.route[{j}]: {what} has no {} endpoint for {key}; its share is refused at connect time (Envoy answers 503)",
                        family(key)
                    ));
                }
                backends = vec![BackendPlan::refused(1)];
            } else if !backends.iter().all(BackendPlan::is_passthrough) {
                // A passthrough share balances nothing: it does not choose the mode.
                let subset = target.subset.as_ref().map(|s| &*s.name);
                policies.push((j, target.rules.load_balancer(subset, port.number)));
            }
        }
        hosts.push(target.host.clone());
        shares.push(Share { weight, backends });
    }

    let mut backends = spread(shares);
    // Nothing but refused shares: a service without backends (refused all the same).
    if backends.iter().all(BackendPlan::is_refused) {
        backends.clear();
    }
    if backends.is_empty() {
        notes.push(format!(
            "{id}: spec.{rule} has no endpoint for {key}: no backend, connects are refused"
        ));
    }
    let load_balancer = policies.first().map(|&(_, lb)| lb).unwrap_or_default();
    if let Some(&(j, other)) = policies.iter().find(|&&(_, lb)| lb != load_balancer) {
        notes.push(format!(
            "{id}: spec.{rule}: its destinations have different load balancers ({load_balancer} and {other} at route[{j}]); {key} uses the first, {load_balancer}"
        ));
    }
    Routed {
        plan: ServicePlan {
            key,
            host: entry.host().clone(),
            resource: entry.id.clone(),
            route: Some(RouteRef::rule(id, chosen.section, chosen.index)),
            load_balancer,
            backends,
            decision: Decision::Kernel,
            http: None,
        },
        hosts,
        notes,
    }
}

/// The destination port when the route names none: the one with the service's port number,
/// else the only one.
pub fn infer_port(entry: &Entry, number: u16) -> Option<&Port> {
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
    if key.vip.is_ipv4() { "IPv4" } else { "IPv6" }
}
