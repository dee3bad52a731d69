//! `ServiceEntry`: adds a service (hosts, virtual addresses, ports, endpoints) to the mesh's
//! registry.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::WorkloadSelector;
use crate::labels::Labels;
use crate::small_map::SmallMap;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs (or CIDRs) of the service.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `MESH_EXTERNAL` or `MESH_INTERNAL` (an `Arc`: the Kubernetes registry's entries
    /// share one copy).
    #[serde(default)]
    pub location: Option<Arc<str>>,
    /// `NONE`, `STATIC`, `DNS` or `DNS_ROUND_ROBIN`; Istio's default when absent is `NONE`.
    #[serde(default)]
    pub resolution: Option<Arc<str>>,
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// What DNS answered for the names of a `DNS` or `DNS_ROUND_ROBIN` entry: filled in by
    /// the agent's resolver, never read from YAML. `None`: not resolved (as in `vsteer plan`).
    #[serde(skip)]
    pub resolved: Option<Arc<DnsAnswers>>,
}

/// The addresses DNS gave each name, in the order of the answer (empty: the name has no
/// address records). A name not listed has had no answer yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAnswers(pub BTreeMap<Box<str>, Arc<[IpAddr]>>);

/// A port of a ServiceEntry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub number: u32,
    /// `HTTP`, `TCP`, `UDP`, ...; empty means "detect", which is TCP at layer 4.
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// An endpoint of a ServiceEntry (Istio's `WorkloadEntry` message, inlined). Strings that
/// are rarely set are boxed: a node holds tens of thousands of endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default)]
    pub address: Box<str>,
    /// Endpoint port by service port name, when it differs from the service port. Shared:
    /// the endpoints of one EndpointSlice, and the compiler's copy, point at the same pairs.
    #[serde(default)]
    pub ports: SmallMap<u32>,
    /// Shared: every backend planned from this endpoint points at the same labels.
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub network: Option<Box<str>>,
    #[serde(default)]
    pub locality: Option<Box<str>>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub service_account: Option<Box<str>>,
}
