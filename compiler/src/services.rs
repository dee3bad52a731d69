//! Every service's final state (stage D): decide first which VirtualService applies (the
//! most specific host, then precedence; a rejected one counts as absent), then build the
//! route of that one only; or, when a rejected resource would have changed the service,
//! keep its state from the last good plan.

use std::sync::Arc;

use vsteer_model::ResourceId;
use vsteer_plan::{Decision, ServiceKey, ServicePlan};

use crate::destination_rule::Rules;
use crate::http;
use crate::registry::{Owner, Registry};
use crate::routes::{self, Routed};
use crate::service_entry::PortKind;
use crate::virtual_service::{Resolved, VirtualService};

/// A VirtualService with its resolution, as stage D reads it.
pub struct Candidate<'a> {
    pub vs: &'a VirtualService,
    pub resolved: &'a Resolved,
    /// How specifically it covers the service.
    pub score: usize,
}

/// What a service's plan came from (the plan itself lives in the plan only).
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub notes: Vec<String>,
    /// Copied from the last good plan because a rejected resource would have changed it.
    pub kept: bool,
    /// Hosts whose entries or rules shaped it (boxed slices: no spare capacity, kept for
    /// every service).
    pub hosts: Box<[Arc<str>]>,
    /// VirtualServices that covered it, or spoiled it.
    pub virtual_services: Box<[ResourceId]>,
    /// A rejected resource would change it, but the last good plan did not have it yet:
    /// compiled as if the resource were absent, and kept from the next update on.
    pub spoiled_without_last: bool,
}

/// The plan and state of service `key`; `None` when no entry holds it any more.
pub fn assemble(
    key: ServiceKey,
    registry: &Registry,
    rules: &Rules,
    mut covering: Vec<Candidate<'_>>,
    last: Option<&ServicePlan>,
    rejected_vs: impl Fn(&ResourceId) -> bool,
) -> Option<(ServicePlan, ServiceState)> {
    let owner = registry.owner(&key)?;
    let entry = match owner {
        Owner::Kept(id) => {
            let last = last?;
            let state = ServiceState {
                notes: vec![format!("kept last good state for {key}: {id} was rejected")],
                kept: true,
                hosts: Box::default(),
                virtual_services: Box::default(),
                spoiled_without_last: false,
            };
            return Some((last.clone(), state));
        }
        Owner::Entry(id) => registry.entries.get(id)?.entry()?,
    };
    // Most specific first, then precedence: Istio's and Envoy's choice.
    covering.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.vs.precedence.cmp(&b.vs.precedence))
    });
    let mut virtual_services: Vec<ResourceId> = covering.iter().map(|c| c.vs.id.clone()).collect();
    let mut notes = Vec::new();
    let mut valid = covering.iter().filter(|c| c.resolved.valid);
    let winner = valid.next();
    if let Some(winner) = winner {
        for other in valid {
            notes.push(format!(
                "{}: also covers {key}, but {} applies (more specific host, or first in input order)",
                other.vs.id, winner.vs.id
            ));
        }
    }
    let mut routed: Routed = match winner {
        Some(c) => routes::route(c.vs, &c.resolved.targets, entry, key, rules),
        None => routes::default_route(entry, key, rules),
    };
    let kind = entry.port(key.port).map(|p| p.kind);
    let sniffed = kind == Some(PortKind::Sniffed)
        && winner.is_some_and(|c| {
            c.vs.spec()
                .http
                .iter()
                .any(|r| crate::matching::http_applies(r, key.port))
        });
    // The http rules apply on HTTP ports, and on sniffed ports that have some.
    let http_rules = kind == Some(PortKind::Http) || sniffed;
    if let Some(c) = winner.filter(|_| http_rules) {
        let (mut table, mut decision, notes) =
            http::table(c.vs, &c.resolved.targets, &c.resolved.mirror_targets, key);
        if sniffed {
            // Istio detects HTTP on this port: its http rules for HTTP, the tcp route for
            // the rest; only the proxy can tell them apart.
            let fallback = crate::tls::connect_time_cluster(&routed.plan, &mut table.clusters);
            table.sniffed = Some(vsteer_plan::http::Sniffed { fallback });
            decision = Decision::Proxy {
                reason: format!(
                    "{} http rules on port {}, whose protocol Istio detects (none declared)",
                    c.vs.id, key.port
                ),
            };
        }
        routed.plan.http = Some(Arc::new(table));
        routed.plan.decision = decision;
        if matches!(routed.plan.decision, Decision::Proxy { .. }) {
            // The route at connect time is only the fallback of a proxied service.
            for note in &mut routed.notes {
                if let Some(head) = note.strip_suffix(": no backend, connects are refused") {
                    let head =
                        head.replace(": no rule matches ", ": no rule takes every request to ");
                    *note = format!(
                        "{head}: the proxy serves its HTTP rules; at connect time (no proxy running, or the proxy's own connects) there is no backend and connects are refused"
                    );
                }
            }
        }
        routed.notes.extend(notes);
    } else if kind == Some(PortKind::Http) && {
        // Checked before a table is built: most services have no such rule.
        rules.for_host(entry.host()).needs_proxy(key.port)
    } {
        // The default route, served by the proxy: the host's DestinationRule asks for what
        // only it does.
        let table = http::default_table(entry, key, rules.for_host(entry.host()));
        if let Some(decision) = http::proxied_by_policy(&table.clusters) {
            routed.plan.http = Some(Arc::new(table));
            routed.plan.decision = decision;
        }
    } else if kind.is_some_and(|k| k != PortKind::Http) {
        let host_rules = rules.for_host(entry.host());
        if host_rules.connection_limits(None, key.port).needs_proxy() {
            routed.notes.push(format!(
                "{} port {}: the DestinationRule's connectionPool limits apply on the proxy path \
                 (HTTP ports) only; this port is steered in the kernel, which counts no \
                 connections: not applied",
                entry.host(),
                key.port
            ));
        }
        if host_rules.outlier_detection(None, key.port).is_some() {
            routed.notes.push(format!(
                "{} port {}: the DestinationRule's outlierDetection judges responses, which \
                 only the proxy sees (HTTP ports); this port is steered in the kernel, which \
                 leaves out endpoints while the proxy has them ejected but ejects none itself",
                entry.host(),
                key.port
            ));
        }
    }

    // A TLS port with `tls` rules: the proxy routes each connection by its SNI; the
    // route above stays the connect-time one, and the fallback of SNIs no rule takes.
    if let (Some(c), Some(PortKind::Tls)) = (winner, kind)
        && let Some((table, decision)) =
            crate::tls::table(c.vs, &c.resolved.targets, key, &routed.plan)
    {
        routed.plan.http = Some(Arc::new(table));
        routed.plan.decision = decision;
    }

    // A table whose only connect-time route refuses everything stays with the proxy, its
    // passthrough clusters answering 503: the kernel would refuse every connection.
    let connect_time_serves = routed.plan.backends.iter().any(|b| !b.is_refused());
    if let (Decision::Proxy { .. }, None, false, Some(table)) = (
        &routed.plan.decision,
        key.prefix_len,
        connect_time_serves,
        routed.plan.http.as_mut(),
    ) && let Some(host) = passthrough_cluster(table)
    {
        routed.notes.push(format!(
            "{key}: destination {host} sends traffic on to the address dialled (resolution \
             NONE, or loadBalancer PASSTHROUGH), which vsteer's proxy does not do yet, and the \
             connect-time route has no backend: the proxy serves the rules, and answers 503 \
             where they route to {host}"
        ));
        drop_passthrough(Arc::make_mut(table));
    }
    if let Decision::Proxy { reason } = &routed.plan.decision
        && let Some(why) = unproxied(key, routed.plan.http.as_deref())
    {
        // The connect-time route serves it whole instead: no connection Istio serves is
        // refused, though its per-request rules are not applied.
        routed.notes.push(format!(
            "{key}: its rules need the proxy ({reason}), but {why}, which vsteer's proxy does \
             not serve yet: steered at connect time by its L4 route, without its per-request \
             rules"
        ));
        routed.plan.decision = Decision::Kernel;
        routed.plan.http = None;
    }

    // What would have changed this service had it been valid: a rejected VirtualService
    // that covers it or routed it last time, or a rejected DestinationRule of one of its
    // hosts.
    // Whether the VirtualService of the last good route is rejected depends on it, even
    // while it is valid or absent: recorded below as something this service depends on.
    let last_route = last.and_then(|s| s.route.as_ref()).map(|r| &r.resource);
    let last_vs = last_route.filter(|id| rejected_vs(id));
    let spoiled_by = covering
        .first()
        .filter(|c| !c.resolved.valid)
        .map(|c| c.vs.id.to_string())
        .or_else(|| last_vs.map(ResourceId::to_string))
        .or_else(|| {
            routed
                .hosts
                .iter()
                .find_map(|host| rules.for_host(host).rejected)
                .map(|id| id.to_string())
        });
    if let Some(id) = last_route {
        virtual_services.push(id.clone());
    }
    let mut hosts = routed.hosts.clone();
    hosts.push(entry.host().clone());
    hosts.sort_unstable();
    hosts.dedup();
    let hosts: Box<[Arc<str>]> = hosts.into();
    let virtual_services: Box<[ResourceId]> = virtual_services.into();
    let spoiled_without_last = spoiled_by.is_some() && last.is_none();
    match (spoiled_by, last) {
        (Some(by), Some(last)) => {
            notes.push(format!("kept last good state for {key}: {by} was rejected"));
            Some((
                last.clone(),
                ServiceState {
                    notes,
                    kept: true,
                    hosts,
                    virtual_services,
                    spoiled_without_last,
                },
            ))
        }
        _ => {
            notes.extend(routed.notes);
            Some((
                routed.plan,
                ServiceState {
                    notes,
                    kept: false,
                    hosts,
                    virtual_services,
                    spoiled_without_last,
                },
            ))
        }
    }
}

/// Why the proxy cannot serve `key`'s table, if it cannot: its key is a CIDR range (the
/// proxy finds tables by the exact address dialled), or a destination is a `resolution:
/// NONE` host (the proxy has no original-destination cluster).
fn unproxied(key: ServiceKey, table: Option<&vsteer_plan::http::HttpRouteTable>) -> Option<String> {
    if key.prefix_len.is_some() {
        return Some(format!("{} is a CIDR range", key.address()));
    }
    let host = passthrough_cluster(table?)?;
    Some(format!(
        "destination {host} sends traffic on to the address dialled (resolution NONE, or loadBalancer PASSTHROUGH)"
    ))
}

/// The host of a cluster of `table` that passes connections through, if any.
fn passthrough_cluster(table: &vsteer_plan::http::HttpRouteTable) -> Option<Arc<str>> {
    table
        .clusters
        .iter()
        .find(|c| {
            c.endpoints
                .iter()
                .any(|e| vsteer_plan::is_passthrough(e.address, e.port))
        })
        .map(|c| c.host.clone())
}

/// Takes the passthrough endpoints out of `table`'s clusters: the proxy answers 503 for a
/// cluster left without endpoints, as Envoy for one with no healthy upstream.
fn drop_passthrough(table: &mut vsteer_plan::http::HttpRouteTable) {
    for cluster in &mut table.clusters {
        cluster
            .endpoints
            .retain(|e| !vsteer_plan::is_passthrough(e.address, e.port));
    }
}
