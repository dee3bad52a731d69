//! What the user wrote: Istio resources (ServiceEntry, VirtualService, DestinationRule),
//! typed (`istio`), with their identity and precedence (`identity`, `resource`), decoded from
//! YAML or a Kubernetes object (`parse`, `decode`) with every problem located by file,
//! resource and field (`diagnostic`), and the store that keeps the last good version of each
//! (`store`). Pure: no I/O; the sources hand it bytes.

pub mod decode;
pub mod diagnostic;
pub mod identity;
pub mod intern;
pub mod istio;
pub mod labels;
pub mod parse;
pub mod resource;
pub mod small_map;
pub mod store;
pub mod yaml;

pub use diagnostic::{Diagnostic, Subject};
pub use identity::{Kind, Precedence, ResourceId};
pub use labels::Labels;
pub use resource::{Origin, Resource, ResourceSpec};
pub use small_map::SmallMap;
