//! The compiler: Istio resources in, a [`Plan`] of virtual services and backends out.
//!
//! Pure: no I/O and no privileges, so every rule about what configuration means is unit
//! tested here, and the datapath only has to write the plan into the kernel.

pub mod names;
pub mod plan;
pub mod render;

mod destination_rule;
mod matching;
mod registry;
mod routes;
mod service_entry;
mod services;
mod subnet;
mod traffic_policy;
mod virtual_service;
mod weights;

pub use plan::{BackendPlan, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE};
pub use render::render;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::config::{ConfigError, Kind, Resource};

/// The result of compiling a set of resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compiled {
    /// What the datapath should steer now: everything that compiled, and for the services a
    /// rejected resource would have changed, their state in the last good plan.
    pub plan: Plan,
    /// One or more per rejected resource.
    pub errors: Vec<ConfigError>,
    /// Things the user should know that are not errors, e.g. rules not applied yet. Each
    /// once, in the order they came up.
    pub notes: Vec<String>,
    /// The services of `plan` copied from the last good plan because a rejected resource
    /// would have changed them (each also has a note saying which). Sorted.
    pub kept: Vec<ServiceKey>,
}

/// Compiles `resources`, in input order: where two resources claim the same thing, the first
/// wins and the second is rejected with an error naming both.
///
/// A resource with an error is rejected whole. Every service it would define or route keeps
/// its state from `last_good` (matched by VIP, port and protocol); a service `last_good` does
/// not have is compiled as if the rejected resource were absent. Pass the plan the datapath
/// runs now, or an empty one at start. Pure and deterministic.
///
/// Documents that did not decode never get here: `sources::last_good::with_last_good` puts
/// their last good version back into `resources`.
pub fn compile(resources: &[Resource], last_good: &Plan) -> Compiled {
    // The phases in the order their inputs need: ServiceEntries define services and
    // destination hosts, DestinationRules name subsets of those, VirtualServices route to
    // both.
    let mut out = Compiled::default();
    let resources = unique(resources, &mut out.errors);
    let registry = registry::build(&resources, last_good, &mut out);
    let rules = destination_rule::collect(&resources, &mut out.errors, &mut out.notes);
    rules.note_unused(&registry, &mut out.notes);
    let virtual_services = virtual_service::collect(&resources, &registry, &rules, &mut out);
    services::assemble(&registry, &rules, &virtual_services, last_good, &mut out);
    out.plan.sort();
    out.kept.sort();
    let mut seen = std::collections::BTreeSet::new();
    out.notes.retain(|note| seen.insert(note.clone()));
    out
}

/// Drops later copies of a resource (same kind, namespace and name), as a Kubernetes API
/// server would hold only one: the first read wins, like every other conflict here.
fn unique<'a>(resources: &'a [Resource], errors: &mut Vec<ConfigError>) -> Vec<&'a Resource> {
    let mut seen: BTreeMap<(Kind, &str, &str), &Resource> = BTreeMap::new();
    let mut kept = Vec::new();
    for resource in resources {
        let key = (
            resource.spec.kind(),
            resource.meta.namespace.as_str(),
            resource.meta.name.as_str(),
        );
        match seen.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(resource);
                kept.push(resource);
            }
            Entry::Occupied(first) => errors.push(
                ConfigError::new(
                    &resource.origin.file,
                    format!(
                        "already defined in {} (document {}); this copy is ignored",
                        first.get().origin.file,
                        first.get().origin.document + 1
                    ),
                )
                .resource(resource.id())
                .field("metadata.name"),
            ),
        }
    }
    kept
}

/// Collects the errors of one resource, which is rejected whole if there are any.
struct Problems<'a> {
    resource: &'a Resource,
    errors: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    fn new(resource: &'a Resource) -> Self {
        Self {
            resource,
            errors: Vec::new(),
        }
    }

    /// Records an error once: a route checked for several services finds the same one.
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let error = ConfigError::new(&self.resource.origin.file, message)
            .resource(self.resource.id())
            .field(field);
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// `spec.hosts`: at least one, none empty, and no bare `*` (which would capture every
    /// service; `star` says why it is refused for this kind).
    fn check_hosts(&mut self, hosts: &[String], star: &str) {
        if hosts.is_empty() {
            self.add("spec.hosts", "at least one host is required");
        }
        for (i, host) in hosts.iter().enumerate() {
            if host.is_empty() {
                self.add(format!("spec.hosts[{i}]"), "host must not be empty");
            } else if host == "*" {
                self.add(format!("spec.hosts[{i}]"), star);
            }
        }
    }

    fn into_result(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests;
