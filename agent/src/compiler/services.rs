//! Every service's final state: the route of the VirtualService that applies to it, or of
//! none; or, when a rejected resource would have changed it, its state in the last good
//! plan.

use std::collections::HashMap;

use super::Compiled;
use super::destination_rule::Rules;
use super::plan::Plan;
use super::registry::{Registry, show};
use super::routes::{default_route, routed_by};
use super::virtual_service::VirtualService;

/// Adds every service to `out.plan`.
pub(super) fn assemble(
    registry: &Registry,
    rules: &Rules,
    virtual_services: &[VirtualService],
    last_good: &Plan,
    out: &mut Compiled,
) {
    // (score, VirtualService index) of every VirtualService covering each service.
    let mut covering_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); registry.services.len()];
    for (index, vs) in virtual_services.iter().enumerate() {
        for &(service, score) in &vs.covered {
            covering_of[service].push((score, index));
        }
    }
    // Looked up once per service: index them, or tens of thousands of services cost seconds.
    let last_by_key: HashMap<_, _> = last_good.services.iter().map(|s| (s.key(), s)).collect();
    let rejected: Vec<&VirtualService> = virtual_services
        .iter()
        .filter(|vs| vs.routes.is_none())
        .collect();
    for (service, mut covering) in registry.services.iter().zip(covering_of) {
        let entry = &registry.entries[service.entry];
        let key = service.key;
        // Most specific first, then input order: Istio's and Envoy's choice.
        covering.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let covering: Vec<&VirtualService> = covering
            .iter()
            .map(|&(_, i)| &virtual_services[i])
            .collect();

        // A rejected VirtualService counts as absent, so the next one, or none, applies.
        let mut valid = covering
            .iter()
            .filter_map(|vs| Some((*vs, vs.routes.as_ref()?)));
        let routed = match valid.next() {
            Some((vs, routes)) => {
                for (other, _) in valid {
                    out.notes.push(format!(
                        "{}: also covers {}, but {} applies (more specific host, or first in input order)",
                        other.id,
                        show(&key),
                        vs.id
                    ));
                }
                routes.get(&key).cloned()
            }
            None => None,
        }
        .unwrap_or_else(|| default_route(entry, key, rules));

        let last = last_by_key.get(&key).copied();
        let last_route = last.and_then(|s| s.route.as_deref());
        // What would have changed this service had it been valid: a rejected VirtualService
        // that covers it or routed it last time, or a rejected DestinationRule of one of its
        // hosts.
        let spoiled_by = covering
            .first()
            .filter(|vs| vs.routes.is_none())
            .map(|vs| vs.id.clone())
            .or_else(|| {
                rejected
                    .iter()
                    .find(|vs| routed_by(last_route, &vs.id))
                    .map(|vs| vs.id.clone())
            })
            .or_else(|| {
                routed
                    .hosts
                    .iter()
                    .find_map(|host| rules.for_host(host).rejected)
            });
        match (spoiled_by, last) {
            (Some(by), Some(last)) => {
                out.notes.push(format!(
                    "kept last good state for {}: {by} was rejected",
                    show(&key)
                ));
                out.kept.push(key);
                out.plan.services.push(last.clone());
            }
            _ => {
                out.notes.extend(routed.notes);
                out.plan.services.push(routed.plan);
            }
        }
    }
    for service in &registry.kept {
        out.notes.push(format!(
            "kept last good state for {}: {} was rejected",
            show(&service.key()),
            service.resource
        ));
        out.kept.push(service.key());
        out.plan.services.push(service.clone());
    }
}
