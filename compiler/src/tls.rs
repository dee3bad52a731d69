//! A TLS port's `tls` rules, compiled for the proxy as Istio builds its TLS filter chains:
//! each rule's match blocks that hold on the service (its port, its VIP in the destination
//! subnets; a block with source conditions matches no client, as vsteer does not know the
//! client yet) reduced to their SNI host patterns, its weighted destinations as clusters,
//! and the service's connect-time route (all endpoints: Istio builds no TCP chain for a
//! TLS port) as where a connection no rule takes goes.

use vsteer_model::istio::TlsMatchAttributes;
use vsteer_plan::http::{
    Cluster, ConnectionLimits, Endpoint, HttpLoadBalancer, HttpRouteTable, TlsDestination,
    TlsRoutes, TlsRule,
};
use vsteer_plan::{Decision, RouteRef, Section, ServiceKey, ServicePlan};

use crate::http::weighted_clusters;
use crate::virtual_service::{Target, VirtualService};

/// The gateway name of the mesh's sidecars (a match naming others does not apply here).
const MESH: &str = "mesh";

/// The proxy's table for `key` from the `tls` rules of `vs`, and the decision that sends
/// it to the proxy (naming the first rule's SNI match); `None` when no rule applies.
/// `connect_time` is the service's plan as the kernel serves it.
pub fn table(
    vs: &VirtualService,
    targets: &[Option<Target>],
    key: ServiceKey,
    connect_time: &ServicePlan,
) -> Option<(HttpRouteTable, Decision)> {
    let mut clusters = Vec::new();
    let mut rules = Vec::new();
    let mut reason = None;
    for (index, rule) in vs.spec().tls.iter().enumerate() {
        if rule.route.is_empty() {
            continue;
        }
        let holding: Vec<(usize, &TlsMatchAttributes)> = rule
            .matches
            .iter()
            .enumerate()
            .filter(|(_, m)| holds(m, key))
            .collect();
        let Some(&(first, _)) = holding.first() else {
            continue;
        };
        reason.get_or_insert_with(|| format!("{} tls[{index}].match[{first}].sniHosts", vs.id));
        rules.push(TlsRule {
            route: RouteRef::rule(&vs.id, Section::Tls, index),
            sni_hosts: holding
                .iter()
                .flat_map(|(_, m)| m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()))
                .collect(),
            destinations: weighted_clusters(
                vs,
                targets,
                vs.rule_destinations(Section::Tls, index),
                key,
                &mut clusters,
            )
            .into_iter()
            .map(|(_, cluster, weight)| TlsDestination { cluster, weight })
            .collect(),
        });
    }
    let reason = reason?;
    let fallback = connect_time_cluster(connect_time, &mut clusters);
    let table = HttpRouteTable {
        rules: Vec::new(),
        clusters,
        tls: Some(TlsRoutes { rules, fallback }),
        sniffed: None,
    };
    Some((table, Decision::Proxy { reason }))
}

/// Whether a match block holds for `key` before the connection says anything: its port,
/// the VIP in its destination subnets, the mesh among its gateways, no source condition.
fn holds(m: &TlsMatchAttributes, key: ServiceKey) -> bool {
    m.port.is_none_or(|p| p == u32::from(key.port))
        && m.source_labels.is_empty()
        && m.source_namespace.is_none()
        && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == MESH))
        && crate::matching::subnets_take(&m.destination_subnets, &key)
}

/// The connect-time route as a cluster of its own (its backends, their weights, its
/// balancer), for the proxy's connections no rule takes; `None` when it has no backend.
pub(crate) fn connect_time_cluster(
    connect_time: &ServicePlan,
    clusters: &mut Vec<Cluster>,
) -> Option<usize> {
    let endpoints: Vec<Endpoint> = connect_time
        .backends
        .iter()
        .filter(|b| !b.is_refused())
        .map(|b| Endpoint {
            address: b.address,
            port: b.port,
            weight: b.weight.max(1),
            priority: 0,
        })
        .collect();
    if endpoints.is_empty() {
        return None;
    }
    clusters.push(Cluster {
        name: format!("connect-time route of {}", connect_time.key),
        host: connect_time.host.clone(),
        subset: None,
        port: connect_time.key.port,
        http2: false,
        load_balancer: HttpLoadBalancer::Simple(connect_time.load_balancer),
        limits: ConnectionLimits::default(),
        outlier: None,
        endpoints,
    });
    Some(clusters.len() - 1)
}
