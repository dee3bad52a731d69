//! Kubernetes mode: the Istio kinds and the cluster's own registry (Services, EndpointSlices,
//! pod labels), read from the API server by watches. `registry` turns a Service into its
//! entry.

pub mod cluster;
pub mod registry;
