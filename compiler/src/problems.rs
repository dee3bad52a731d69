//! Collecting the errors of one resource, which is rejected whole if it has any, and the
//! errors every kind can have (hosts, port numbers).

use std::sync::Arc;

use vsteer_model::{Diagnostic, Resource};

/// Problems any resource can have in a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("at least one host is required")]
    NoHosts,
    #[error("host must not be empty")]
    EmptyHost,
    #[error("the wildcard host * is not allowed {why}")]
    CatchAllHost { why: &'static str },
    #[error("{what} must be between 1 and 65535, got {got}")]
    PortRange { what: &'static str, got: u64 },
    #[error("{what} is required")]
    Required { what: &'static str },
}

/// The errors of one resource.
pub(crate) struct Problems {
    file: Arc<str>,
    resource: vsteer_model::ResourceId,
    pub errors: Vec<Diagnostic>,
}

impl Problems {
    pub fn new(resource: &Resource) -> Self {
        Self {
            file: resource.origin.file.clone(),
            resource: resource.id.clone(),
            errors: Vec::new(),
        }
    }

    /// Records an error once: a route checked for several services finds the same one.
    pub fn add(
        &mut self,
        field: impl Into<String>,
        problem: impl std::error::Error + Send + Sync + 'static,
    ) {
        let error = Diagnostic::new(self.file.clone(), problem)
            .resource_id(&self.resource)
            .field(field);
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `spec.hosts`: at least one, none empty, and no bare `*` (which would capture every
    /// service; `why` says why it is refused for this kind).
    pub fn check_hosts(&mut self, hosts: &[String], why: &'static str) {
        if hosts.is_empty() {
            self.add("spec.hosts", FieldError::NoHosts);
        }
        for (i, host) in hosts.iter().enumerate() {
            if host.is_empty() {
                self.add(format!("spec.hosts[{i}]"), FieldError::EmptyHost);
            } else if host == "*" {
                self.add(format!("spec.hosts[{i}]"), FieldError::CatchAllHost { why });
            }
        }
    }

    /// A port number in 1..=65535 at `field`, else an error there.
    pub fn port(&mut self, field: String, what: &'static str, number: u32) -> Option<u16> {
        let port = port_number(number);
        if port.is_none() {
            self.add(
                field,
                FieldError::PortRange {
                    what,
                    got: u64::from(number),
                },
            );
        }
        port
    }

    pub fn into_result(self) -> Result<(), Vec<Diagnostic>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

pub(crate) fn port_number(number: u32) -> Option<u16> {
    u16::try_from(number).ok().filter(|&n| n != 0)
}
