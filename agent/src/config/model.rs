//! The typed Istio configuration model.
//!
//! The spec structs mirror the `networking.istio.io` reference (ServiceEntry, VirtualService,
//! DestinationRule) with their camelCase field names. They are plain serde types on purpose:
//! the file source deserializes them from YAML and a Kubernetes source can deserialize the
//! same types from an object's JSON, so both produce identical [`Resource`] values. Fields
//! vsteer does not act on yet are kept as loose [`Value`]s, so valid Istio configuration
//! is accepted (and can be typed later) rather than flagged as unknown.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_yaml::Value;

/// API group of the Istio networking resources.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";
/// Versions of [`ISTIO_NETWORKING_GROUP`] that vsteer reads; Istio serves all three with the
/// same schema for these kinds.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
/// The namespace of a resource whose metadata names none, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One Istio resource, wherever it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub origin: Origin,
    pub meta: Meta,
    pub spec: ResourceSpec,
}

impl Resource {
    /// How messages name this resource: `ServiceEntry default/reviews`.
    pub fn id(&self) -> String {
        self.meta.id()
    }
}

/// Where a resource was read from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The path as given, or `<embedded>/name.yaml` for the built-in examples.
    pub file: String,
    /// 0-based index of the YAML document in the file.
    pub document: usize,
}

/// The Kubernetes object metadata vsteer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// [`DEFAULT_NAMESPACE`] when the metadata names none.
    pub namespace: String,
}

impl Meta {
    /// `Kind namespace/name`, the way every message names a resource.
    pub fn id(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The kinds vsteer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ServiceEntry,
    VirtualService,
    DestinationRule,
}

impl Kind {
    pub const ALL: [Kind; 3] = [
        Kind::ServiceEntry,
        Kind::VirtualService,
        Kind::DestinationRule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceEntry => "ServiceEntry",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
        }
    }

    /// The kind named exactly `name` (Kubernetes kinds are case-sensitive).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spec of a resource, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceSpec {
    ServiceEntry(ServiceEntrySpec),
    VirtualService(VirtualServiceSpec),
    DestinationRule(DestinationRuleSpec),
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

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// Selects workloads (pods, WorkloadEntries) by labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A port of a destination service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

/// Istio's `StringMatch`: one of `exact`, `prefix` or `regex`.
///
/// Deserialized through a struct rather than as a serde enum so that the Kubernetes JSON form
/// (`{"exact": "jason"}`) and the YAML form read the same way.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "StringMatchFields")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// `{}`: for headers and query parameters Istio reads this as "present, any value".
    Any,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StringMatchFields {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
}

impl TryFrom<StringMatchFields> for StringMatch {
    type Error = String;

    fn try_from(fields: StringMatchFields) -> Result<Self, Self::Error> {
        match (fields.exact, fields.prefix, fields.regex) {
            (None, None, None) => Ok(StringMatch::Any),
            (Some(exact), None, None) => Ok(StringMatch::Exact(exact)),
            (None, Some(prefix), None) => Ok(StringMatch::Prefix(prefix)),
            (None, None, Some(regex)) => Ok(StringMatch::Regex(regex)),
            _ => Err("a string match takes only one of exact, prefix and regex".to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ServiceEntry
// ---------------------------------------------------------------------------------------------

/// `ServiceEntry.spec`: adds a service (hosts, virtual addresses, ports, endpoints) to the
/// mesh's registry.
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
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub service_account: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// VirtualService
// ---------------------------------------------------------------------------------------------

/// `VirtualService.spec`: ordered routing rules for traffic to some hosts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// One HTTP routing rule: the first whose `match` fits a request decides its route.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    /// Any one of these must match (OR); an empty list matches everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub redirect: Option<Value>,
    #[serde(default)]
    pub direct_response: Option<Value>,
    #[serde(default)]
    pub delegate: Option<Value>,
    #[serde(default)]
    pub rewrite: Option<Value>,
    #[serde(default)]
    pub retries: Option<Value>,
    #[serde(default)]
    pub fault: Option<Value>,
    #[serde(default)]
    pub mirror: Option<Value>,
    #[serde(default)]
    pub mirrors: Option<Value>,
    #[serde(default)]
    pub mirror_percent: Option<Value>,
    #[serde(default)]
    pub mirror_percentage: Option<Value>,
    #[serde(default)]
    pub cors_policy: Option<Value>,
    #[serde(default)]
    pub headers: Option<Value>,
}

/// Conditions on an HTTP request; all that are set must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<StringMatch>,
    #[serde(default)]
    pub scheme: Option<StringMatch>,
    #[serde(default)]
    pub method: Option<StringMatch>,
    #[serde(default)]
    pub authority: Option<StringMatch>,
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub ignore_uri_case: bool,
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub source_namespace: Option<String>,
    #[serde(default)]
    pub stat_prefix: Option<String>,
}

/// A weighted destination of an HTTP route.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<i32>,
    #[serde(default)]
    pub headers: Option<Value>,
}

/// A weighted destination of a TCP or TLS route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<i32>,
}

/// Where traffic goes: a registry host, optionally one subset and one port of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default)]
    pub port: Option<PortSelector>,
}

/// One TCP routing rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// Conditions on a TCP connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4MatchAttributes {
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub source_namespace: Option<String>,
    /// Deprecated in Istio, still accepted.
    #[serde(default)]
    pub source_subnet: Option<String>,
}

/// One routing rule for unterminated TLS, matched by SNI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// Conditions on a TLS connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub source_namespace: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// DestinationRule
// ---------------------------------------------------------------------------------------------

/// `DestinationRule.spec`: policies for a host and the named subsets of its endpoints.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    #[serde(default)]
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
}

/// A named group of a host's endpoints, selected by labels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

/// Boxed where it is used: it is large and usually absent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default)]
    pub connection_pool: Option<Value>,
    #[serde(default)]
    pub outlier_detection: Option<Value>,
    #[serde(default)]
    pub tls: Option<Value>,
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    #[serde(default)]
    pub tunnel: Option<Value>,
    #[serde(default)]
    pub proxy_protocol: Option<Value>,
    #[serde(default)]
    pub retry_budget: Option<Value>,
}

/// A traffic policy for one port of the host.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    #[serde(default)]
    pub port: Option<PortSelector>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default)]
    pub connection_pool: Option<Value>,
    #[serde(default)]
    pub outlier_detection: Option<Value>,
    #[serde(default)]
    pub tls: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// `ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM`, `PASSTHROUGH`, ...
    #[serde(default)]
    pub simple: Option<String>,
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHashLb>,
    #[serde(default)]
    pub locality_lb_setting: Option<Value>,
    #[serde(default)]
    pub warmup_duration_secs: Option<Value>,
    #[serde(default)]
    pub warmup: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    #[serde(default)]
    pub http_header_name: Option<String>,
    #[serde(default)]
    pub http_cookie: Option<Value>,
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
    #[serde(default)]
    pub ring_hash: Option<Value>,
    #[serde(default)]
    pub maglev: Option<Value>,
    #[serde(default)]
    pub minimum_ring_size: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kubernetes JSON form of a spec must read into the same types as the YAML form.
    #[test]
    fn string_match_reads_from_a_mapping() {
        let m: StringMatch = serde_yaml::from_str("exact: jason").unwrap();
        assert_eq!(m, StringMatch::Exact("jason".into()));
        let any: StringMatch = serde_yaml::from_str("{}").unwrap();
        assert_eq!(any, StringMatch::Any);
        let both: Result<StringMatch, _> = serde_yaml::from_str("{exact: a, prefix: b}");
        assert!(both.unwrap_err().to_string().contains("only one of"));
    }

    /// The VirtualService and DestinationRule of Istio's traffic-management overview.
    const SEED: &str = "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true}
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
  - name: v3
    labels:
      version: v3
";

    #[test]
    fn seed_example_reads_into_the_typed_model() {
        let loaded = crate::sources::parse_str("seed.yaml", SEED);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let [vs, dr] = loaded.resources.as_slice() else {
            panic!("expected two resources, got {:?}", loaded.resources);
        };

        assert_eq!(vs.id(), "VirtualService default/reviews");
        assert_eq!(vs.meta.api_version, "networking.istio.io/v1alpha3");
        let ResourceSpec::VirtualService(vs) = &vs.spec else {
            panic!("not a VirtualService");
        };
        assert_eq!(vs.hosts, ["reviews"]);
        assert_eq!(vs.http.len(), 2);
        let first = &vs.http[0];
        assert_eq!(first.matches.len(), 1);
        assert_eq!(
            first.matches[0].headers.get("end-user"),
            Some(&StringMatch::Exact("jason".into()))
        );
        assert_eq!(first.route.len(), 1);
        assert_eq!(first.route[0].destination.host, "reviews");
        assert_eq!(first.route[0].destination.subset.as_deref(), Some("v2"));
        let second = &vs.http[1];
        assert!(second.matches.is_empty(), "the default rule matches all");
        assert_eq!(second.route[0].destination.subset.as_deref(), Some("v3"));

        assert_eq!(dr.id(), "DestinationRule default/reviews");
        let ResourceSpec::DestinationRule(dr) = &dr.spec else {
            panic!("not a DestinationRule");
        };
        assert_eq!(dr.host, "reviews");
        let subsets: Vec<_> = dr
            .subsets
            .iter()
            .map(|s| (s.name.as_str(), s.labels.get("version").map(String::as_str)))
            .collect();
        assert_eq!(
            subsets,
            [("v1", Some("v1")), ("v2", Some("v2")), ("v3", Some("v3"))]
        );
        assert!(dr.subsets.iter().all(|s| s.labels.len() == 1));
        let lb = dr
            .traffic_policy
            .as_ref()
            .and_then(|p| p.load_balancer.as_ref());
        assert_eq!(
            lb.and_then(|lb| lb.consistent_hash.as_ref())
                .and_then(|h| h.use_source_ip),
            Some(true)
        );
        assert_eq!(
            dr.subsets[1]
                .traffic_policy
                .as_ref()
                .and_then(|p| p.load_balancer.as_ref())
                .and_then(|lb| lb.simple.as_deref()),
            Some("ROUND_ROBIN")
        );
    }

    /// A Kubernetes source will hand over JSON; the same types must read it (serde_yaml reads
    /// JSON text as YAML, so this needs no JSON crate).
    #[test]
    fn specs_read_from_kubernetes_json_too() {
        let json = r#"{"hosts":["reviews"],"tcp":[{"match":[{"port":9080,"destinationSubnets":["10.0.0.0/8"]}],"route":[{"destination":{"host":"reviews","subset":"v1","port":{"number":9080}},"weight":100}]}],"http":[{"match":[{"uri":{"prefix":"/api"}}],"route":[{"destination":{"host":"reviews"}}],"timeout":"5s","retries":{"attempts":3}}]}"#;
        let vs: VirtualServiceSpec = serde_yaml::from_str(json).unwrap();
        assert_eq!(vs.tcp[0].matches[0].port, Some(9080));
        assert_eq!(vs.tcp[0].route[0].weight, Some(100));
        assert_eq!(
            vs.tcp[0].route[0].destination.port,
            Some(PortSelector { number: 9080 })
        );
        assert_eq!(
            vs.http[0].matches[0].uri,
            Some(StringMatch::Prefix("/api".into()))
        );
        assert_eq!(vs.http[0].timeout.as_deref(), Some("5s"));
        assert!(vs.http[0].retries.is_some());
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("serviceentry"), None);
    }
}
