//! One Istio resource as vsteer holds it: identity, where it was read, its precedence and
//! its typed spec.

use std::sync::Arc;

use crate::identity::{Kind, Precedence, ResourceId};
use crate::istio::{DestinationRuleSpec, ServiceEntrySpec, VirtualServiceSpec};

/// One Istio resource, wherever it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: ResourceId,
    pub origin: Origin,
    pub precedence: Precedence,
    /// As written, e.g. `networking.istio.io/v1beta1`.
    pub api_version: Arc<str>,
    pub spec: ResourceSpec,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        self.id.kind
    }

    pub fn namespace(&self) -> &str {
        &self.id.namespace
    }
}

/// Where a resource was read from, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The path as given, or `<embedded>/name.yaml` for the built-in examples.
    pub file: Arc<str>,
    /// 0-based index of the YAML document in the file.
    pub document: usize,
}

/// The spec of a resource, by kind. Boxed: the kinds differ in size, and an inline enum
/// would give every resource the largest one's.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceSpec {
    ServiceEntry(Box<ServiceEntrySpec>),
    VirtualService(Box<VirtualServiceSpec>),
    DestinationRule(Box<DestinationRuleSpec>),
}

impl ResourceSpec {
    pub fn kind(&self) -> Kind {
        match self {
            ResourceSpec::ServiceEntry(_) => Kind::ServiceEntry,
            ResourceSpec::VirtualService(_) => Kind::VirtualService,
            ResourceSpec::DestinationRule(_) => Kind::DestinationRule,
        }
    }
}
