//! The HTTP route table of one service: the rules of the VirtualService that applies,
//! compiled and validated (durations parsed, regexes checked, destinations resolved to
//! endpoints), in the order Istio evaluates them. The proxy serves it per request: the first
//! rule with a matching `matches` entry decides; none matching is a 404.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::route::RouteRef;
use crate::service::LoadBalancer;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRouteTable {
    pub rules: Vec<HttpRule>,
    /// Every destination the rules name (host, subset, port), with its endpoints; rules point
    /// here by index, so a destination named by several rules is held once.
    pub clusters: Vec<Cluster>,
    /// On a TLS port: the `tls` rules, routing each connection by the SNI of its
    /// ClientHello without terminating TLS (then `rules` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsRoutes>,
    /// On a port Istio sniffs (no protocol declared): `rules` serve the connections that
    /// speak HTTP, and the others go to the connect-time route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sniffed: Option<Sniffed>,
}

/// Where a sniffed port's connections that do not speak HTTP go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sniffed {
    /// A cluster of `clusters` (the connect-time route: `tcp` rules, else all endpoints);
    /// `None`: such connections are closed (no endpoint).
    pub fallback: Option<usize>,
}

/// A TLS port's routes, as Istio's filter chains: the rule with the most specific SNI host
/// pattern matching the ClientHello's takes the connection (`*` also takes those without
/// SNI); any other goes to `fallback`, the service's connect-time route (all endpoints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsRoutes {
    pub rules: Vec<TlsRule>,
    /// A cluster of `clusters`; `None`: such connections are closed (no endpoint).
    pub fallback: Option<usize>,
}

/// One `tls` rule, with the match blocks that hold on this service (port, destination
/// subnets) reduced to their SNI host patterns (exact, or `*.` and a suffix).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsRule {
    pub route: RouteRef,
    pub sni_hosts: Vec<String>,
    /// Weights in parts per million, as HTTP routes'.
    pub destinations: Vec<TlsDestination>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TlsDestination {
    pub cluster: usize,
    pub weight: u32,
}

/// One rule of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRule {
    pub route: RouteRef,
    pub name: Option<String>,
    /// Any one must match (OR); empty matches every request.
    pub matches: Vec<RequestMatch>,
    pub action: HttpAction,
    pub rewrite: Option<Rewrite>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    #[serde(serialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    pub retries: Option<RetryPolicy>,
    pub fault: Option<Fault>,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<Cors>,
}

/// One `match` entry: every condition set must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestMatch {
    pub uri: Option<StrMatch>,
    pub scheme: Option<StrMatch>,
    pub method: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    /// Header names lowercase, as HTTP/2 and the proxy see them.
    pub headers: Vec<(String, StrMatch)>,
    pub without_headers: Vec<(String, StrMatch)>,
    pub query_params: Vec<(String, StrMatch)>,
    /// `uri` exact and prefix matches ignore case.
    pub ignore_uri_case: bool,
}

/// A string condition. Regexes are RE2 syntax (checked by the compiler) and must match the
/// whole value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// The header or parameter is present, with any value.
    Present,
}

/// What a matching rule does with the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpAction {
    /// Forward it to one of `destinations`, by weight (parts per million, summing to
    /// 1,000,000). A destination without endpoints keeps its weight and its share is
    /// answered 503 (`no healthy upstream`, as Envoy); empty: no destination resolved, every
    /// request 503. Destinations of weight 0 are left out.
    Route {
        destinations: Vec<WeightedCluster>,
        /// The rule lists more than one destination (counted before zero weights are left
        /// out, as Istio does): Envoy's weighted clusters, whose header operations are a
        /// level of their own; else a single cluster, whose operations join the rule's.
        weighted: bool,
    },
    Redirect(Redirect),
    DirectResponse {
        status: u16,
        #[serde(serialize_with = "body_opt")]
        body: Option<Arc<[u8]>>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedCluster {
    /// Index into [`HttpRouteTable::clusters`].
    pub cluster: usize,
    pub weight: u32,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

/// A destination (host, optional subset and port) and its endpoints, as Envoy calls it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// `reviews.default.svc.cluster.local|v2|9080`, as Envoy names it (without direction).
    pub name: String,
    pub host: Arc<str>,
    pub subset: Option<Arc<str>>,
    pub port: u16,
    /// HTTP/2 to the endpoints (the destination port is HTTP2 or GRPC), else HTTP/1.1.
    pub http2: bool,
    pub load_balancer: HttpLoadBalancer,
    /// The DestinationRule's `connectionPool` limits (Envoy's circuit breakers); unset ones
    /// are unlimited, as Istio sets them.
    #[serde(skip_serializing_if = "ConnectionLimits::is_unlimited")]
    pub limits: ConnectionLimits,
    /// The DestinationRule's `outlierDetection`: endpoints that keep failing are ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierDetection>,
    pub endpoints: Vec<Endpoint>,
}

/// Passive health checking of a cluster's endpoints, as Istio configures Envoy's outlier
/// detection: consecutive failures eject an endpoint at once (within the share
/// `max_ejection_percent` allows), for `base_ejection_time` times its ejections so far;
/// every `interval` ejections that have run their time end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (Envoy's default 5 when unset; `None`: 0, off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// `consecutiveGatewayErrors`: 502, 503 and 504 (off unless set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway: Option<u32>,
    /// `consecutiveLocalOriginFailures`: connect failures, resets and timeouts, counted
    /// apart from responses only with `splitExternalLocalOriginErrors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin: Option<u32>,
    /// `splitExternalLocalOriginErrors`: without it, a local failure counts as a 5xx and
    /// a gateway error (as Envoy maps it: 503, or 504 for a timeout).
    pub split_local_origin: bool,
    #[serde(serialize_with = "duration")]
    pub interval: Duration,
    #[serde(serialize_with = "duration")]
    pub base_ejection_time: Duration,
    /// Envoy's `max_ejection_time` (Istio leaves it: 300 s, or the base when longer).
    #[serde(serialize_with = "duration")]
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// Below this share of endpoints not ejected, ejections are ignored (Envoy's panic
    /// threshold); Istio's default 0 never ignores them.
    pub min_health_percent: u32,
    /// `outlierDetectionHttpErrorCodes`: these statuses count as the failures of
    /// `consecutive5xxErrors` instead of 5xx.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u16>,
}

impl Default for OutlierDetection {
    /// What an `outlierDetection: {}` means in Istio (Envoy's defaults).
    fn default() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: Some(5),
            consecutive_gateway: None,
            consecutive_local_origin: None,
            split_local_origin: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            min_health_percent: 0,
            error_codes: Vec::new(),
        }
    }
}

/// A cluster's limits, as Istio's `connectionPool` sets Envoy's circuit breakers and
/// connection options. Over a limit a request gets 503 at once (`x-envoy-overloaded`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ConnectionLimits {
    /// `tcp.maxConnections`: upstream connections of the cluster, all endpoints together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`: requests in flight (HTTP/1.1 and HTTP/2 alike, as in Envoy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection`: an HTTP/1.1 connection is closed after so many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// `tcp.connectTimeout`.
    #[serde(
        serialize_with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
}

impl ConnectionLimits {
    pub fn is_unlimited(&self) -> bool {
        *self == ConnectionLimits::default()
    }

    /// Whether a limit counts connections or requests, which only the proxy can.
    pub fn needs_proxy(&self) -> bool {
        self.max_connections.is_some()
            || self.max_pending_requests.is_some()
            || self.max_requests.is_some()
            || self.max_requests_per_connection.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    /// Relative to the cluster's other endpoints.
    pub weight: u32,
    /// Envoy's priority level: 0 takes the traffic while healthy enough, the next levels
    /// what it cannot (locality failover). 0 for every endpoint without failover.
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Per-request load balancing, as the DestinationRule asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpLoadBalancer {
    Simple(LoadBalancer),
    /// Consistent hashing on a request header.
    Header(String),
    /// Consistent hashing on a cookie (set by the proxy with `ttl` when absent).
    Cookie {
        name: String,
        path: Option<String>,
        #[serde(serialize_with = "duration_opt")]
        ttl: Option<Duration>,
    },
    QueryParameter(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub uri: Option<String>,
    /// Replaces the path's matched prefix (the whole path after an exact match).
    pub prefix_rewrite: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub port: Option<RedirectPort>,
    pub code: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPort {
    Fixed(u16),
    /// The scheme's default port (80 or 443).
    FromProtocolDefault,
    FromRequestPort,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    /// Replaces the part of the path the rule's uri match matched (the whole path for an
    /// exact or regex match, the prefix for a prefix match).
    pub uri: Option<String>,
    pub authority: Option<String>,
    /// (RE2 pattern, replacement with `\1` groups) applied to the path.
    pub uri_regex: Option<(String, String)>,
}

/// Header operations: set replaces, add appends, remove deletes (names lowercase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderOps {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    #[serde(serialize_with = "duration_opt")]
    pub per_try_timeout: Option<Duration>,
    /// Envoy's retry conditions (`5xx`, `connect-failure`, ...) and, as numbers, status
    /// codes.
    pub retry_on: Vec<String>,
    pub retry_remote_localities: bool,
    /// `backoff`: the base interval of Envoy's jittered exponential back-off between tries
    /// (unset: Envoy's 25 ms).
    #[serde(
        serialize_with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    #[serde(serialize_with = "duration")]
    pub fixed: Duration,
    /// Of requests, 0.0 to 100.0.
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    pub status: AbortStatus,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortStatus {
    Http(u16),
    /// A gRPC status name, e.g. `UNAVAILABLE`.
    Grpc(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// Index into [`HttpRouteTable::clusters`].
    pub cluster: usize,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<StrMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    #[serde(serialize_with = "duration_opt")]
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
}

fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{}s", d.as_secs_f64()))
}

fn duration_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

fn body_opt<S: Serializer>(body: &Option<Arc<[u8]>>, s: S) -> Result<S::Ok, S::Error> {
    match body {
        Some(body) => s.serialize_str(&String::from_utf8_lossy(body)),
        None => s.serialize_none(),
    }
}
