//! Kubernetes mode: the Istio kinds and the cluster's own registry (Services, EndpointSlices,
//! pod labels), read from the API server by watches (`watches`) into the cluster state
//! (`cluster`), where `registry` turns each Service into its entry.

pub mod cluster;
pub mod node_pods;
pub mod records;
pub mod registry;
pub mod watches;

pub use watches::{KubeSettings, Watches, start};
