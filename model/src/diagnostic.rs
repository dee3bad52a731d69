//! How every problem a user can cause is reported: the typed error of the module that found
//! it, located by file, resource and field, so that the message alone finds the line to fix.

use std::fmt;
use std::sync::Arc;

use crate::identity::ResourceId;

/// What a problem is about, as precisely as vsteer knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Resource(ResourceId),
    /// An object of a kind vsteer does not read, named as written: `ConfigMap default/c`.
    Other(String),
    /// A document whose kind or name could not be read: `ServiceEntry in document 3` or
    /// `document 3` (1-based, as a person counts).
    Document {
        kind: Option<String>,
        document: usize,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Resource(id) => write!(f, "{id}"),
            Subject::Other(name) => f.write_str(name),
            Subject::Document {
                kind: Some(kind),
                document,
            } => write!(f, "{kind} in document {}", document + 1),
            Subject::Document {
                kind: None,
                document,
            } => write!(f, "document {}", document + 1),
        }
    }
}

/// The typed error (or warning) of the module that found the problem.
pub type Problem = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A problem, located. The same type carries warnings (things skipped or ignored) so both
/// print alike: `vs.yaml: VirtualService default/reviews: spec.http[0].route: ...`.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Where the resource came from: a path as given, or `<embedded>/name.yaml`.
    pub file: Arc<str>,
    pub subject: Option<Subject>,
    /// The field path inside the object, e.g. `spec.endpoints[1].address`.
    pub field: Option<String>,
    pub problem: Problem,
}

impl Diagnostic {
    /// A problem with a whole file; add the subject and field with the builder methods.
    pub fn new(
        file: impl Into<Arc<str>>,
        problem: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            file: file.into(),
            subject: None,
            field: None,
            problem: Arc::new(problem),
        }
    }

    pub fn about(mut self, subject: Subject) -> Self {
        self.subject = Some(subject);
        self
    }

    pub fn resource_id(self, id: &ResourceId) -> Self {
        self.about(Subject::Resource(id.clone()))
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// The resource as messages name it, e.g. `ServiceEntry default/reviews`.
    pub fn resource(&self) -> Option<String> {
        self.subject.as_ref().map(Subject::to_string)
    }

    /// The id of the resource it is about, when known.
    pub fn resource_id_of(&self) -> Option<&ResourceId> {
        match &self.subject {
            Some(Subject::Resource(id)) => Some(id),
            _ => None,
        }
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> String {
        self.problem.to_string()
    }

    /// The problem as the module's own error type, for tests and callers that act on it.
    pub fn problem<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let problem: &(dyn std::error::Error + 'static) = &*self.problem;
        problem.downcast_ref::<E>()
    }
}

impl PartialEq for Diagnostic {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file
            && self.subject == other.subject
            && self.field == other.field
            && self.message() == other.message()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(subject) = &self.subject {
            write!(f, ": {subject}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Kind;

    #[derive(Debug, thiserror::Error)]
    #[error("bad")]
    struct Bad;

    #[test]
    fn display_names_every_known_part() {
        let id = ResourceId::new(Kind::ServiceEntry, "default", "x");
        let full = Diagnostic::new("a.yaml", Bad)
            .resource_id(&id)
            .field("spec.hosts");
        assert_eq!(
            full.to_string(),
            "a.yaml: ServiceEntry default/x: spec.hosts: bad"
        );
        let file_only = Diagnostic::new("a.yaml", Bad);
        assert_eq!(file_only.to_string(), "a.yaml: bad");
        let no_resource = Diagnostic::new("a.yaml", Bad).field("kind");
        assert_eq!(no_resource.to_string(), "a.yaml: kind: bad");
        let document = Diagnostic::new("a.yaml", Bad).about(Subject::Document {
            kind: Some("VirtualService".into()),
            document: 2,
        });
        assert_eq!(
            document.to_string(),
            "a.yaml: VirtualService in document 3: bad"
        );
        assert!(full.problem::<Bad>().is_some());
    }
}
