//! The typed Istio configuration model: the `networking.istio.io` reference (ServiceEntry,
//! VirtualService, DestinationRule) with its camelCase field names.
//!
//! Plain serde types: the file source deserializes them from YAML, a Kubernetes source from
//! an object's JSON, into identical values. Fields vsteer does not act on yet are typed all
//! the same (or kept loose where Istio's own type is open-ended), so valid Istio
//! configuration is accepted rather than flagged as unknown.

mod common;
mod destination_rule;
mod service_entry;
mod virtual_service;
pub mod yaml11;

pub use common::*;
pub use destination_rule::*;
pub use service_entry::*;
pub use virtual_service::*;

#[cfg(test)]
mod tests;
