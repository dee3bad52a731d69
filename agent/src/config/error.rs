//! The one error type for everything a user can get wrong in the configuration.

use std::fmt;

/// A problem in the configuration, located as precisely as vsteer knows it.
///
/// Every error a user can cause names the file, and the resource and field when they are
/// known, so the message alone is enough to find the line to fix. The same type carries
/// warnings (things skipped or ignored) so both print alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the resource came from: a path as given, or `<embedded>/name.yaml`.
    pub file: String,
    /// The resource, e.g. `ServiceEntry default/reviews`, when it could be identified.
    pub resource: Option<String>,
    /// The field path inside the resource, e.g. `spec.endpoints[1].address`.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// An error about a whole file; add the resource and field with the builder methods.
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(resource) = &self.resource {
            write!(f, ": {resource}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_every_known_part() {
        let full = ConfigError::new("a.yaml", "bad")
            .resource("ServiceEntry default/x")
            .field("spec.hosts");
        assert_eq!(
            full.to_string(),
            "a.yaml: ServiceEntry default/x: spec.hosts: bad"
        );
        let file_only = ConfigError::new("a.yaml", "bad");
        assert_eq!(file_only.to_string(), "a.yaml: bad");
        let no_resource = ConfigError::new("a.yaml", "bad").field("kind");
        assert_eq!(no_resource.to_string(), "a.yaml: kind: bad");
    }
}
