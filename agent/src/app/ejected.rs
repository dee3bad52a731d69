//! The kernel's view of the proxy's outlier detection: endpoints the proxy has ejected are
//! left out of the connect-time tables of every service they back (kernel path, or the
//! fallback of a proxied one), their share spread over the others in proportion, until the
//! ejection ends. Established connections are untouched: only new connects choose again.
//! A service whose every backend is ejected keeps them all: passive health alone never
//! refuses a connection (as Envoy's panic mode serves all hosts when none is healthy).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use vsteer_plan::{BackendPlan, Plan, ServiceKey, ServicePlan, WEIGHT_SCALE};
use vsteer_proxy::Ejection;

/// Where the admin listener shows the ejections in force.
pub const EJECTIONS_PAGE: &str = "/proxy/ejections";

/// One ejection as the admin page shows it (and `vsteer status` reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EjectionRecord {
    pub address: SocketAddr,
    pub cluster: String,
    /// The Istio field whose count was reached.
    pub reason: String,
    pub failures: u32,
    /// Seconds since the ejection, and at least until its end.
    pub ejected_for: f64,
    pub remaining: f64,
    /// The endpoint's ejections in the multiplier of this one's time.
    pub times: u32,
}

/// The page: the ejections in force as JSON.
pub fn page(ejections: &[Ejection]) -> String {
    let now = std::time::SystemTime::now();
    let records: Vec<EjectionRecord> = ejections
        .iter()
        .map(|e| EjectionRecord {
            address: e.address,
            cluster: e.cluster.clone(),
            reason: e.reason.name().to_string(),
            failures: e.failures,
            ejected_for: now
                .duration_since(e.since)
                .unwrap_or_default()
                .as_secs_f64(),
            remaining: e
                .until
                .duration_since(now)
                .unwrap_or_default()
                .as_secs_f64(),
            times: e.times,
        })
        .collect();
    serde_json::to_string(&records).unwrap_or_else(|_| "[]".to_string())
}

fn ejected(backend: &BackendPlan, set: &BTreeSet<SocketAddr>) -> bool {
    set.contains(&SocketAddr::new(backend.address, backend.port))
}

/// `service` without its ejected backends, weights scaled back to [`WEIGHT_SCALE`]; `None`
/// when it has none to leave out (or would be left with none).
pub fn without_ejected(service: &ServicePlan, set: &BTreeSet<SocketAddr>) -> Option<ServicePlan> {
    if set.is_empty() || !service.backends.iter().any(|b| ejected(b, set)) {
        return None;
    }
    let kept: Vec<&BackendPlan> = service
        .backends
        .iter()
        .filter(|b| !ejected(b, set))
        .collect();
    if kept.iter().all(|b| b.weight == 0) {
        return None;
    }
    // Each keeps at least the weight it had (the kept total is at most the scale): above 0.
    let weights: Vec<u64> = kept.iter().map(|b| u64::from(b.weight)).collect();
    let parts = vsteer_compiler::largest_remainder(u64::from(WEIGHT_SCALE), &weights);
    let backends: Vec<BackendPlan> = kept
        .iter()
        .zip(parts)
        .map(|(b, weight)| BackendPlan {
            weight: u32::try_from(weight).unwrap_or(WEIGHT_SCALE),
            ..(*b).clone()
        })
        .collect();
    Some(ServicePlan {
        backends,
        ..service.clone()
    })
}

/// The services of `plan` that have a backend among `addrs`.
pub fn backed_by(plan: &Plan, addrs: &BTreeSet<SocketAddr>) -> Vec<ServiceKey> {
    if addrs.is_empty() {
        return Vec::new();
    }
    plan.services()
        .filter(|s| s.backends.iter().any(|b| ejected(b, addrs)))
        .map(|s| s.key)
        .collect()
}

/// What the kernel is given for `keys` of `plan` while `set` is ejected: the services of
/// `keys` only, those with ejected backends without them; `None` when that is `plan` as
/// it is for them.
pub fn for_kernel(plan: &Plan, keys: &[ServiceKey], set: &BTreeSet<SocketAddr>) -> Option<Plan> {
    if set.is_empty() {
        return None;
    }
    let mut changed = false;
    let partial: Plan = keys
        .iter()
        .filter_map(|key| plan.service(key))
        .map(|service| match without_ejected(service, set) {
            Some(healthy) => {
                changed = true;
                healthy
            }
            None => service.clone(),
        })
        .collect();
    changed.then_some(partial)
}

#[cfg(test)]
mod tests {
    use vsteer_model::parse::parse_str;

    use super::*;

    fn plan() -> Plan {
        let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.default.svc.cluster.local]
  addresses: [10.0.0.1]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}, {address: 10.1.0.2}, {address: 10.1.0.3}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other}
spec:
  hosts: [other.default.svc.cluster.local]
  addresses: [10.0.0.2]
  ports: [{number: 80, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.9}]
";
        let parsed = parse_str("db.yaml", yaml);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        vsteer_compiler::compile(&parsed.resources, &Plan::default()).plan
    }

    fn set(addrs: &[&str]) -> BTreeSet<SocketAddr> {
        addrs
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect()
    }

    #[test]
    fn ejected_backends_leave_and_the_rest_share_the_whole() {
        let plan = plan();
        let db = plan.services().next().expect("db").clone();
        let healthy = without_ejected(&db, &set(&["10.1.0.2:5432"])).expect("changed");
        let kept: Vec<String> = healthy
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        assert_eq!(kept, ["10.1.0.1", "10.1.0.3"]);
        // Half each, to the part per million that rounding leaves.
        assert!(
            healthy
                .backends
                .iter()
                .all(|b| b.weight.abs_diff(WEIGHT_SCALE / 2) <= 1),
            "{:?}",
            healthy.backends
        );
        assert_eq!(
            healthy.backends.iter().map(|b| b.weight).sum::<u32>(),
            WEIGHT_SCALE
        );
        // Same address, another port: not that endpoint.
        assert!(without_ejected(&db, &set(&["10.1.0.2:80"])).is_none());
    }

    #[test]
    fn a_service_whose_every_backend_is_ejected_keeps_them() {
        let plan = plan();
        let db = plan.services().next().expect("db").clone();
        let all = set(&["10.1.0.1:5432", "10.1.0.2:5432", "10.1.0.3:5432"]);
        assert!(without_ejected(&db, &all).is_none());
    }

    #[test]
    fn only_the_services_an_ejection_touches_are_written() {
        let plan = plan();
        let ejected = set(&["10.1.0.3:5432"]);
        let keys = backed_by(&plan, &ejected);
        assert_eq!(keys.len(), 1);
        let partial = for_kernel(&plan, &keys, &ejected).expect("a change");
        assert_eq!(partial.len(), 1);
        assert_eq!(partial.services().next().expect("db").backends.len(), 2);
        let all: Vec<ServiceKey> = plan.keys().copied().collect();
        let other_only = &all[1..];
        assert!(for_kernel(&plan, other_only, &ejected).is_none());
        assert!(for_kernel(&plan, &all, &BTreeSet::new()).is_none());
    }
}
