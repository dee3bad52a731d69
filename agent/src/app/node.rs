//! The node's sink: the kernel maps and, when the proxy runs, its route tables, kept in step
//! with the plan. Route tables change before the kernel so that a service the kernel starts
//! sending to the proxy finds its table already there.

use anyhow::Result;
use vsteer_datapath::{ApplyStats, Datapath};
use vsteer_plan::{Plan, ServiceKey};
use vsteer_proxy::RouteTables;

use super::agent::Sink;

pub struct Node {
    pub datapath: Datapath,
    /// `None` when the proxy is off (`--no-proxy`).
    pub routes: Option<RouteTables>,
}

impl Sink for Node {
    fn apply_all(&mut self, plan: &Plan) -> Result<ApplyStats> {
        if let Some(routes) = &self.routes {
            routes.replace(plan);
        }
        self.datapath.apply(plan)
    }

    fn apply_changes(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats> {
        if let Some(routes) = &self.routes {
            routes.update(plan, keys);
        }
        self.datapath.apply_changes(plan, keys)
    }

    fn sweep(&mut self) {
        self.datapath.sweep()
    }
}
