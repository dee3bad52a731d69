//! The compiler: Istio resources in, a plan out. `compile` compiles a set of resources
//! from scratch; `Compiler` keeps its state between changes and recompiles only what a
//! change can affect (what the agent runs).
//!
//! Stages, each in its own module: a resource alone (`service_entry`, `destination_rule`,
//! `virtual_service` stage A: every field checked, errors located), the registry of
//! services and who holds each VIP (`registry`), each VirtualService resolved against the
//! registry and the rules (`virtual_service` stage C: each destination once), then each
//! service (`services`): the VirtualService that applies chosen first, its route built
//! (`routes`, `weights`, `http`). `engine` keeps the results and the indexes that say what a
//! change touches.
//!
//! Pure: no I/O and no privileges, so every rule about what configuration means is unit
//! tested here, and the datapath only has to write the plan into the kernel.

pub mod agreement;
mod delegate;
mod destination_rule;
mod duration;
mod engine;
mod export_to;
mod http;
pub mod locality;
mod matching;
pub mod names;
mod problems;
mod registry;
mod routes;
mod service_entry;
mod services;
mod sorted;
mod subnet;
mod tls;
mod traffic_policy;
mod virtual_service;
mod weights;

use std::sync::Arc;

pub use destination_rule::DestinationRuleError;
pub use engine::{Change, Compiler, Update};
pub use http::HttpRuleError;
pub use problems::FieldError;
pub use registry::ConflictError;
pub use service_entry::{ServiceEntryError, dns_names};
pub use traffic_policy::PolicyError;
pub use virtual_service::VirtualServiceError;
pub use vsteer_plan::{Plan, ServiceKey};
pub use weights::largest_remainder;

use vsteer_model::{Diagnostic, Resource};

/// The result of compiling a set of resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compiled {
    /// What the datapath should steer now: everything that compiled, and for the services a
    /// rejected resource would have changed, their state in the last good plan.
    pub plan: Plan,
    /// One or more per rejected resource, by resource precedence.
    pub errors: Vec<Diagnostic>,
    /// Things the user should know that are not errors, e.g. rules not applied yet. Each
    /// once.
    pub notes: Vec<String>,
    /// The services of `plan` copied from the last good plan because a rejected resource
    /// would have changed them (each also has a note saying which). Sorted.
    pub kept: Vec<ServiceKey>,
}

/// Compiles `resources`. Where two resources claim the same thing, the first by precedence
/// wins and the second is rejected with an error naming both; a second copy of a resource
/// (same kind, namespace and name) is ignored with an error.
///
/// A resource with an error is rejected whole. Every service it would define or route keeps
/// its state from `last_good` (matched by VIP, port and protocol); a service `last_good` does
/// not have is compiled as if the rejected resource were absent. Pass the plan the datapath
/// runs now, or an empty one at start. Pure and deterministic.
pub fn compile(resources: &[Resource], last_good: &Plan) -> Compiled {
    compile_at(resources, last_good, None)
}

/// [`compile`] for a node at `locality` (which `localityLbSetting` is seen from).
pub fn compile_at(
    resources: &[Resource],
    last_good: &Plan,
    locality: Option<&locality::Locality>,
) -> Compiled {
    let (unique, mut errors) = vsteer_model::store::first_copies(resources);
    let changes: Vec<Change> = unique
        .into_iter()
        .map(|r| (r.id.clone(), Some(Arc::new(r.clone()))))
        .collect();
    let mut compiler = Compiler::with_last_good(last_good);
    compiler.set_locality(locality.cloned());
    compiler.update(&changes);
    errors.extend(compiler.errors());
    Compiled {
        plan: compiler.plan().clone(),
        errors,
        notes: compiler.notes(),
        kept: compiler.kept(),
    }
}

#[cfg(test)]
mod tests;
