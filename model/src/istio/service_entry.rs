//! `ServiceEntry`: adds a service (hosts, virtual addresses, ports, endpoints) to the mesh's
//! registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::WorkloadSelector;

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
    /// `MESH_EXTERNAL` or `MESH_INTERNAL`.
    #[serde(default)]
    pub location: Option<String>,
    /// `NONE`, `STATIC`, `DNS` or `DNS_ROUND_ROBIN`; Istio's default when absent is `NONE`.
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

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

/// An endpoint of a ServiceEntry (Istio's `WorkloadEntry` message, inlined).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default)]
    pub address: String,
    /// Endpoint port by service port name, when it differs from the service port.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Shared: every backend planned from this endpoint points at the same map.
    #[serde(default)]
    pub labels: Arc<BTreeMap<String, String>>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub service_account: Option<String>,
}
