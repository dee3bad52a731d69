//! The node's sink: the kernel maps and, when the proxy runs, its route tables, kept in step
//! with the plan. A service the kernel will send to the proxy gets its table before the
//! kernel flips; a service leaving the proxy loses its table only after the kernel stopped
//! sending it there (and not at all when that write failed: the kernel still redirects).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::Result;
use vsteer_datapath::{ApplyStats, Datapath};
use vsteer_plan::{Decision, Plan, ServiceKey};
use vsteer_proxy::RouteTables;

use super::agent::Sink;
use super::ejected;

pub struct Node {
    pub datapath: Datapath,
    /// `None` when the proxy is off (`--no-proxy`).
    pub routes: Option<RouteTables>,
    /// The endpoints the proxy has ejected, as the kernel was last told them: left out of
    /// the services they back (see [`super::ejected`]).
    pub ejected: BTreeSet<SocketAddr>,
}

impl Node {
    pub fn new(datapath: Datapath, routes: Option<RouteTables>) -> Node {
        Node {
            datapath,
            routes,
            ejected: BTreeSet::new(),
        }
    }
}

fn proxied(plan: &Plan, key: &ServiceKey) -> bool {
    plan.service(key)
        .is_some_and(|s| matches!(s.decision, Decision::Proxy { .. }))
}

impl Sink for Node {
    fn apply_all(&mut self, plan: &Plan) -> Result<ApplyStats> {
        let keys: Vec<ServiceKey> = plan.keys().copied().collect();
        let datapath = &mut self.datapath;
        let healthy = ejected::for_kernel(plan, &keys, &self.ejected);
        let stats = in_order(self.routes.as_ref(), plan, &keys, || {
            datapath.apply(healthy.as_ref().unwrap_or(plan))
        })?;
        if let Some(routes) = &self.routes {
            // Also drops tables of services the plan no longer has at all.
            routes.replace(plan);
        }
        Ok(stats)
    }

    fn apply_changes(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats> {
        let datapath = &mut self.datapath;
        let healthy = ejected::for_kernel(plan, keys, &self.ejected);
        in_order(self.routes.as_ref(), plan, keys, || {
            datapath.apply_changes(healthy.as_ref().unwrap_or(plan), keys)
        })
    }

    fn sweep(&mut self) {
        self.datapath.sweep()
    }

    fn prune(&mut self, plan: &Plan) -> Result<usize> {
        self.datapath.prune_counters(plan)
    }
}

/// Writes the kernel with `write` between the two halves of the route table update: tables
/// of services that are proxied in `plan` before, the removal of the others after, and only
/// if the kernel took the change.
fn in_order<T>(
    routes: Option<&RouteTables>,
    plan: &Plan,
    keys: &[ServiceKey],
    write: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let (joining, leaving): (Vec<ServiceKey>, Vec<ServiceKey>) =
        keys.iter().partition(|key| proxied(plan, key));
    if let Some(routes) = routes {
        routes.update(plan, &joining);
    }
    let written = write()?;
    if let Some(routes) = routes {
        routes.update(plan, &leaving);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use vsteer_model::parse::parse_str;

    use super::*;

    const VIP: &str = "10.0.0.1:80";

    /// One HTTP service; proxied when `header` adds a header rule before the default.
    fn plan(header: bool) -> Plan {
        let rule = if header {
            "  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: web}}]\n"
        } else {
            ""
        };
        let yaml = format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  addresses: [10.0.0.1]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.1.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
{rule}  - route: [{{destination: {{host: web}}}}]
"
        );
        let parsed = parse_str("web.yaml", &yaml);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let compiled = vsteer_compiler::compile(&parsed.resources, &Plan::default());
        assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
        compiled.plan
    }

    fn vip() -> SocketAddr {
        VIP.parse().unwrap()
    }

    #[test]
    fn a_table_is_in_place_before_the_kernel_sends_the_service_to_the_proxy() {
        let routes = RouteTables::new();
        let proxied = plan(true);
        let keys: Vec<ServiceKey> = proxied.keys().copied().collect();
        let seen = in_order(
            Some(&routes),
            &proxied,
            &keys,
            || Ok(routes.contains(vip())),
        );
        assert!(
            seen.unwrap(),
            "the kernel was written before the table was there"
        );
        assert!(routes.contains(vip()));
    }

    #[test]
    fn a_table_stays_until_the_kernel_stopped_sending_the_service_to_the_proxy() {
        let routes = RouteTables::new();
        routes.replace(&plan(true));
        let kernel = plan(false);
        let keys: Vec<ServiceKey> = kernel.keys().copied().collect();
        let seen = in_order(Some(&routes), &kernel, &keys, || Ok(routes.contains(vip())));
        assert!(
            seen.unwrap(),
            "the table went before the kernel stopped redirecting"
        );
        assert!(!routes.contains(vip()), "the table outlived the change");
        // A kernel write that fails leaves the kernel redirecting: the table must stay.
        routes.replace(&plan(true));
        let failed: Result<()> =
            in_order(Some(&routes), &kernel, &keys, || anyhow::bail!("map full"));
        assert!(failed.is_err());
        assert!(routes.contains(vip()), "a failed write took the table away");
    }
}
