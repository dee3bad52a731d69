//! The compiler: Istio resources in, a [`Plan`] of virtual services and backends out.
//!
//! Pure: no I/O and no privileges, so every rule about what configuration means is unit
//! tested here, and the datapath only has to write the plan into the kernel.

pub mod names;
pub mod plan;
pub mod render;
mod routes;
mod service_entry;
mod subsets;

pub use plan::{BackendPlan, Plan, Protocol, ServicePlan};
pub use render::render;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::{IpAddr, SocketAddr};

use crate::config::{ConfigError, Kind, Resource, ResourceSpec};

/// The result of compiling a set of resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compiled {
    /// Everything that compiled; resources with errors contribute nothing.
    pub plan: Plan,
    /// One or more per rejected resource.
    pub errors: Vec<ConfigError>,
    /// Things the user should know that are not errors, e.g. rules not applied yet.
    pub notes: Vec<String>,
}

/// Compiles `resources`, in input order: where two resources claim the same thing, the first
/// wins and the second is rejected with an error naming both.
pub fn compile(resources: &[Resource]) -> Compiled {
    let mut out = Compiled::default();
    let resources = unique(resources, &mut out.errors);

    let mut claimed: BTreeMap<(IpAddr, u16, Protocol), &Resource> = BTreeMap::new();
    for &resource in &resources {
        let ResourceSpec::ServiceEntry(spec) = &resource.spec else {
            continue;
        };
        let compiled = match service_entry::compile(resource, spec) {
            Ok(compiled) => compiled,
            Err(errors) => {
                out.errors.extend(errors);
                continue;
            }
        };
        let conflicts: Vec<ConfigError> = compiled
            .claims
            .iter()
            .filter_map(|claim| {
                let s = &claim.service;
                let owner = claimed.get(&(s.vip, s.port, s.protocol))?;
                Some(
                    ConfigError::new(
                        &resource.origin.file,
                        format!(
                            "{}/{} is already claimed by {} ({}); this ServiceEntry is ignored",
                            SocketAddr::new(s.vip, s.port),
                            s.protocol,
                            owner.id(),
                            owner.origin.file
                        ),
                    )
                    .resource(resource.id())
                    .field(format!("spec.addresses[{}]", claim.address_index)),
                )
            })
            .collect();
        if !conflicts.is_empty() {
            out.errors.extend(conflicts);
            continue;
        }
        for claim in compiled.claims {
            let s = &claim.service;
            claimed.insert((s.vip, s.port, s.protocol), resource);
            out.plan.services.push(claim.service);
        }
        out.notes.extend(compiled.notes);
    }

    let rules = subsets::collect(
        resources.iter().filter_map(|&r| match &r.spec {
            ResourceSpec::DestinationRule(spec) => Some((r, spec)),
            _ => None,
        }),
        &mut out.errors,
    );
    subsets::assign(&mut out.plan, &rules, &mut out.notes);

    for &resource in &resources {
        if let ResourceSpec::VirtualService(spec) = &resource.spec {
            routes::compile(resource, spec, &mut out.notes);
        }
    }

    out.plan.sort();
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

    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(
            ConfigError::new(&self.resource.origin.file, message)
                .resource(self.resource.id())
                .field(field),
        );
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
