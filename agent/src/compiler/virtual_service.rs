//! VirtualServices: whether each is valid, which services it covers, and its route for
//! each of them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::destination_rule::Rules;
use super::matching::MESH;
use super::names::{host_match, resolve_host};
use super::plan::ServiceKey;
use super::registry::Registry;
use super::routes::{self, Routed};
use super::service_entry::Entry;
use super::subnet::Subnet;
use super::{Compiled, Problems};
use crate::config::{Destination, Resource, ResourceSpec, VirtualServiceSpec};

/// A VirtualService that applies to the mesh.
pub(super) struct VirtualService {
    pub id: String,
    /// `spec.hosts` resolved in the resource's namespace.
    hosts: Vec<String>,
    /// Every service it covers (index into the registry's services) and how specifically.
    pub covered: Vec<(usize, usize)>,
    /// Its route for every service it covers; `None` when it is rejected.
    pub routes: Option<BTreeMap<ServiceKey, Routed>>,
}

impl VirtualService {
    /// How specifically it covers the services of `entry` at `vip` (`None`: not at all), as
    /// Envoy picks a virtual host: the VIP itself or an exact name beats a longer wildcard,
    /// which beats a shorter one.
    pub fn covers(&self, entry: &Entry, vip: IpAddr) -> Option<usize> {
        self.hosts
            .iter()
            .filter_map(|pattern| {
                if pattern.parse::<IpAddr>() == Ok(vip) {
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
}

/// Validates the VirtualServices of `resources` and compiles their routes for every service
/// they cover, also where a more specific one wins (Envoy gets those routes too, so their
/// errors are errors). One that applies only to gateways is left out with a note.
pub(super) fn collect(
    resources: &[&Resource],
    registry: &Registry,
    rules: &Rules,
    out: &mut Compiled,
) -> Vec<VirtualService> {
    let mut all = Vec::new();
    for &resource in resources {
        let ResourceSpec::VirtualService(spec) = &resource.spec else {
            continue;
        };
        let id = resource.id();
        if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == MESH) {
            out.notes.push(format!(
                "{id}: applies only to gateways ({}), not to mesh traffic: skipped",
                spec.gateways.join(", ")
            ));
            continue;
        }
        if !spec.tls.is_empty() {
            out.notes.push(format!(
                "{id}: spec.tls: tls rules are not supported yet: skipped"
            ));
        }
        let mut problems = Problems::new(resource);
        check(resource, spec, registry, rules, &mut problems);
        let mut vs = VirtualService {
            id: id.clone(),
            hosts: spec
                .hosts
                .iter()
                .map(|h| resolve_host(h, &resource.meta.namespace))
                .collect(),
            covered: Vec::new(),
            routes: None,
        };
        vs.covered = registry
            .candidates(&vs.hosts)
            .into_iter()
            .filter_map(|i| {
                let service = &registry.services[i];
                let entry = &registry.entries[service.entry];
                vs.covers(entry, service.key.0).map(|score| (i, score))
            })
            .collect();
        let mut routes = BTreeMap::new();
        if problems.errors.is_empty() {
            for &(i, _) in &vs.covered {
                let service = &registry.services[i];
                let entry = &registry.entries[service.entry];
                match routes::route(resource, spec, entry, service.key, registry, rules) {
                    Ok(routed) => {
                        routes.insert(service.key, routed);
                    }
                    Err(errors) => {
                        for (field, message) in errors {
                            problems.add(field, message);
                        }
                    }
                }
            }
            if routes.is_empty() && problems.errors.is_empty() {
                out.notes.push(format!(
                    "{id}: hosts {} match no ServiceEntry service; it routes nothing",
                    vs.hosts.join(", ")
                ));
            }
        }
        match problems.into_result() {
            Ok(()) => vs.routes = Some(routes),
            Err(errors) => out.errors.extend(errors),
        }
        all.push(vs);
    }
    all
}

/// Checks what does not depend on the service routed: hosts, matches, destinations and
/// weights.
fn check(
    resource: &Resource,
    spec: &VirtualServiceSpec,
    registry: &Registry,
    rules: &Rules,
    problems: &mut Problems,
) {
    // Istio's own rule: `*` would capture every service of the mesh.
    problems.check_hosts(
        &spec.hosts,
        "the wildcard host * is not allowed for a VirtualService that applies to the mesh",
    );
    for (i, rule) in spec.http.iter().enumerate() {
        let field = format!("spec.http[{i}]");
        let acts =
            rule.redirect.is_some() || rule.direct_response.is_some() || rule.delegate.is_some();
        if rule.route.is_empty() && !acts {
            problems.add(
                format!("{field}.route"),
                "a rule needs a route, redirect, directResponse or delegate",
            );
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let field = format!("{field}.match[{k}]");
            check_port(m.port, &field, problems);
            check_source(
                &field,
                !m.source_labels.is_empty(),
                m.source_namespace.is_some(),
                false,
                problems,
            );
        }
        let destinations: Vec<_> = rule
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        check_destinations(resource, &field, &destinations, registry, rules, problems);
    }
    for (i, rule) in spec.tcp.iter().enumerate() {
        let field = format!("spec.tcp[{i}]");
        if rule.route.is_empty() {
            problems.add(format!("{field}.route"), "a rule needs a route");
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let field = format!("{field}.match[{k}]");
            check_port(m.port, &field, problems);
            check_source(
                &field,
                !m.source_labels.is_empty(),
                m.source_namespace.is_some(),
                m.source_subnet.is_some(),
                problems,
            );
            for (s, subnet) in m.destination_subnets.iter().enumerate() {
                if let Err(message) = Subnet::parse(subnet) {
                    problems.add(format!("{field}.destinationSubnets[{s}]"), message);
                }
            }
        }
        let destinations: Vec<_> = rule
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        check_destinations(resource, &field, &destinations, registry, rules, problems);
    }
}

fn check_port(port: Option<u32>, field: &str, problems: &mut Problems) {
    if let Some(n) = port
        && (n == 0 || n > 65535)
    {
        problems.add(
            format!("{field}.port"),
            format!("port must be between 1 and 65535, got {n}"),
        );
    }
}

/// Conditions on the connecting workload: the kernel sees a socket of some cgroup, not its
/// pod's labels or namespace, so vsteer cannot decide them yet.
fn check_source(field: &str, labels: bool, namespace: bool, subnet: bool, problems: &mut Problems) {
    for (name, set) in [
        ("sourceLabels", labels),
        ("sourceNamespace", namespace),
        ("sourceSubnet", subnet),
    ] {
        if set {
            problems.add(
                format!("{field}.{name}"),
                format!(
                    "not supported by vsteer: {name} cannot be decided at connect time on a node; drop the condition or use a separate host"
                ),
            );
        }
    }
}

/// Each destination must name a known host, a defined subset and an existing port; with
/// several, every weight must be set and they must sum to 100 (Istio's rule).
fn check_destinations(
    resource: &Resource,
    field: &str,
    destinations: &[(&Destination, Option<i32>)],
    registry: &Registry,
    rules: &Rules,
    problems: &mut Problems,
) {
    for (j, (destination, weight)) in destinations.iter().enumerate() {
        let at = format!("{field}.route[{j}].destination");
        if let Err(errors) =
            routes::target(destination, &resource.meta.namespace, &at, registry, rules)
        {
            for (f, message) in errors {
                problems.add(f, message);
            }
        }
        if let Some(w) = weight
            && *w < 0
        {
            problems.add(
                format!("{field}.route[{j}].weight"),
                format!("weight must not be negative, got {w}"),
            );
        }
    }
    if destinations.len() < 2 {
        return;
    }
    let unset: Vec<String> = destinations
        .iter()
        .enumerate()
        .filter(|(_, (_, w))| w.is_none())
        .map(|(j, _)| format!("route[{j}]"))
        .collect();
    let sum: i64 = destinations
        .iter()
        .map(|(_, w)| i64::from(w.unwrap_or(0)))
        .sum();
    if !unset.is_empty() {
        problems.add(
            format!("{field}.route"),
            format!(
                "with several destinations every weight must be set, and they must sum to 100; {} has no weight",
                unset.join(", ")
            ),
        );
    } else if sum != 100 {
        problems.add(
            format!("{field}.route"),
            format!("weights sum to {sum}, must be 100"),
        );
    }
}
