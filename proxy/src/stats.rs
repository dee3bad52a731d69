//! What the proxy counts: connections accepted, refused (by reason) and active, requests by
//! response class, local replies, upstream failures, clients that gave up; and their
//! Prometheus export, read from the same atomics at scrape time so the data path pays one
//! relaxed add per event.
//!
//! A local reply to a gRPC request goes out as HTTP 200 with a `grpc-status` (as Envoy sends
//! it) but is counted in the class of the HTTP status it stands for (a `no healthy upstream`
//! is a 5xx), so error rates read the same for gRPC and plain HTTP callers. A request whose
//! client went away before its response is counted in no class.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The proxy's counters; public so the agent and the tests read them directly.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted and served (after the original destination was found).
    pub connections_accepted: AtomicU64,
    /// Downstream connections open now (upgraded tunnels included).
    pub connections_active: AtomicU64,
    /// Closed at once: no original destination recorded for the connection.
    pub refused_no_original_destination: AtomicU64,
    /// Closed at once: the original destination has no proxied route table.
    pub refused_not_proxied: AtomicU64,
    /// Closed at once: the original destination is the proxy's own address (a loop).
    pub refused_own_address: AtomicU64,
    /// Responses sent downstream, by class: 1xx, 2xx, 3xx, 4xx, 5xx (a gRPC local reply by
    /// the HTTP status it stands for).
    pub responses: [AtomicU64; 5],
    /// 404s because no rule matched.
    pub no_route: AtomicU64,
    /// 503s because the chosen destination has no endpoint.
    pub no_healthy_upstream: AtomicU64,
    /// 503s because the rule's destinations resolved to no cluster (Envoy's
    /// `cluster_not_found`).
    pub no_cluster: AtomicU64,
    /// 503s because a `connectionPool` limit was reached (Envoy's `upstream_rq_*_overflow`).
    pub overflows: AtomicU64,
    /// Upstream connects that failed (refused, timed out, SO_MARK denied, own address).
    pub upstream_connect_errors: AtomicU64,
    /// Upstream connections that failed after connecting, before the response headers.
    pub upstream_resets: AtomicU64,
    /// Requests whose client reset the stream or closed while its body was being sent
    /// upstream (no response is sent or counted).
    pub downstream_resets: AtomicU64,
    /// Requests answered 504 because the route's timeout fired before the response.
    pub upstream_timeouts: AtomicU64,
    /// Retries: a try that failed and was made again (on another endpoint when there is one).
    pub retries: AtomicU64,
    /// Mirrored copies sent, those that failed (no endpoint, no connection, reset), and
    /// requests not mirrored because they had a body.
    pub mirrors_sent: AtomicU64,
    pub mirrors_failed: AtomicU64,
    pub mirrors_skipped: AtomicU64,
    /// Requests a rule's `fault` delayed, and those it aborted.
    pub faults_delayed: AtomicU64,
    pub faults_aborted: AtomicU64,
    /// TLS connections routed by the SNI of their ClientHello, those that took the
    /// connect-time route (no TLS, no SNI, or one no rule takes), and those closed (no
    /// route, no endpoint, a failed connect).
    pub tls_by_sni: AtomicU64,
    pub tls_fallback: AtomicU64,
    pub tls_failed: AtomicU64,
    /// Connections to a sniffed port that did not speak HTTP, passed to its tcp route.
    pub opaque_connections: AtomicU64,
}

/// A copy of [`ProxyStats`] at one moment, for comparisons in tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections_accepted: u64,
    pub connections_active: u64,
    pub refused_no_original_destination: u64,
    pub refused_not_proxied: u64,
    pub refused_own_address: u64,
    pub responses: [u64; 5],
    pub no_route: u64,
    pub no_healthy_upstream: u64,
    pub no_cluster: u64,
    pub overflows: u64,
    pub upstream_connect_errors: u64,
    pub upstream_resets: u64,
    pub downstream_resets: u64,
    pub upstream_timeouts: u64,
    pub retries: u64,
    pub mirrors_sent: u64,
    pub mirrors_failed: u64,
    pub mirrors_skipped: u64,
    pub faults_delayed: u64,
    pub faults_aborted: u64,
    pub tls_by_sni: u64,
    pub tls_fallback: u64,
    pub tls_failed: u64,
    pub opaque_connections: u64,
}

impl ProxyStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_active: self.connections_active.load(Relaxed),
            refused_no_original_destination: self.refused_no_original_destination.load(Relaxed),
            refused_not_proxied: self.refused_not_proxied.load(Relaxed),
            refused_own_address: self.refused_own_address.load(Relaxed),
            responses: std::array::from_fn(|i| self.responses[i].load(Relaxed)),
            no_route: self.no_route.load(Relaxed),
            no_healthy_upstream: self.no_healthy_upstream.load(Relaxed),
            no_cluster: self.no_cluster.load(Relaxed),
            overflows: self.overflows.load(Relaxed),
            upstream_connect_errors: self.upstream_connect_errors.load(Relaxed),
            upstream_resets: self.upstream_resets.load(Relaxed),
            downstream_resets: self.downstream_resets.load(Relaxed),
            upstream_timeouts: self.upstream_timeouts.load(Relaxed),
            retries: self.retries.load(Relaxed),
            mirrors_sent: self.mirrors_sent.load(Relaxed),
            mirrors_failed: self.mirrors_failed.load(Relaxed),
            mirrors_skipped: self.mirrors_skipped.load(Relaxed),
            faults_delayed: self.faults_delayed.load(Relaxed),
            faults_aborted: self.faults_aborted.load(Relaxed),
            tls_by_sni: self.tls_by_sni.load(Relaxed),
            tls_fallback: self.tls_fallback.load(Relaxed),
            tls_failed: self.tls_failed.load(Relaxed),
            opaque_connections: self.opaque_connections.load(Relaxed),
        }
    }

    pub(crate) fn response(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// Registers the proxy's metrics (`vsteer_proxy_*`) on `registry`; they are read from `stats`
/// at each scrape.
pub fn register_metrics(registry: &mut Registry, stats: Arc<ProxyStats>) {
    registry.register_collector(Box::new(StatsCollector(stats)));
}

struct StatsCollector(Arc<ProxyStats>);

impl fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsCollector")
    }
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = self.0.snapshot();
        counter(
            &mut encoder,
            "vsteer_proxy_accepted_connections",
            "Downstream connections accepted and served",
            s.connections_accepted,
        )?;
        let gauge = ConstGauge::new(i64::try_from(s.connections_active).unwrap_or(i64::MAX));
        gauge.encode(encoder.encode_descriptor(
            "vsteer_proxy_active_connections",
            "Downstream connections open now",
            None,
            gauge.metric_type(),
        )?)?;
        let refused = [
            ("no_original_destination", s.refused_no_original_destination),
            ("not_proxied", s.refused_not_proxied),
            ("own_address", s.refused_own_address),
        ];
        labelled(
            &mut encoder,
            "vsteer_proxy_refused_connections",
            "Downstream connections closed at once, by reason",
            "reason",
            &refused,
        )?;
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let responses: Vec<(&str, u64)> = classes.into_iter().zip(s.responses).collect();
        labelled(
            &mut encoder,
            "vsteer_proxy_requests",
            "Requests answered, by response class",
            "class",
            &responses,
        )?;
        let local = [
            ("no_route", s.no_route),
            ("no_healthy_upstream", s.no_healthy_upstream),
            ("cluster_not_found", s.no_cluster),
            ("overflow", s.overflows),
        ];
        labelled(
            &mut encoder,
            "vsteer_proxy_local_replies",
            "Requests answered by the proxy itself, by reason",
            "reason",
            &local,
        )?;
        counter(
            &mut encoder,
            "vsteer_proxy_upstream_connect_errors",
            "Upstream connects that failed",
            s.upstream_connect_errors,
        )?;
        counter(
            &mut encoder,
            "vsteer_proxy_upstream_resets",
            "Upstream connections that failed before the response headers",
            s.upstream_resets,
        )?;
        counter(
            &mut encoder,
            "vsteer_proxy_downstream_resets",
            "Requests whose client went away while their body was sent upstream",
            s.downstream_resets,
        )?;
        counter(
            &mut encoder,
            "vsteer_proxy_upstream_timeouts",
            "Requests answered 504: the route's timeout fired before the response",
            s.upstream_timeouts,
        )?;
        counter(
            &mut encoder,
            "vsteer_proxy_upstream_retries",
            "Upstream tries that failed and were made again",
            s.retries,
        )?;
        let mirrors = [
            ("sent", s.mirrors_sent),
            ("failed", s.mirrors_failed),
            ("skipped_body", s.mirrors_skipped),
        ];
        labelled(
            &mut encoder,
            "vsteer_proxy_mirrored_requests",
            "Mirrored copies of requests, by outcome",
            "outcome",
            &mirrors,
        )?;
        let faults = [("delay", s.faults_delayed), ("abort", s.faults_aborted)];
        labelled(
            &mut encoder,
            "vsteer_proxy_faults_injected",
            "Requests a VirtualService fault delayed or aborted, by kind",
            "kind",
            &faults,
        )?;
        let tls = [
            ("sni", s.tls_by_sni),
            ("fallback", s.tls_fallback),
            ("failed", s.tls_failed),
        ];
        labelled(
            &mut encoder,
            "vsteer_proxy_tls_connections",
            "TLS connections passed through by route: a tls rule's SNI, the connect-time route, or closed",
            "route",
            &tls,
        )?;
        counter(
            &mut encoder,
            "vsteer_proxy_opaque_connections",
            "Connections to a port of undeclared protocol that did not speak HTTP, passed to its tcp route",
            s.opaque_connections,
        )
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (value, v) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Registers the outlier detection's metrics: `vsteer_proxy_ejections_total{reason}` and
/// `vsteer_proxy_ejected_endpoints`, read from `ejections` at each scrape.
pub fn register_ejection_metrics(registry: &mut Registry, ejections: crate::Ejections) {
    registry.register_collector(Box::new(EjectionsCollector(ejections)));
}

#[derive(Debug)]
struct EjectionsCollector(crate::Ejections);

impl Collector for EjectionsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = self.0.counts().map(|(reason, n)| (reason.name(), n));
        labelled(
            &mut encoder,
            "vsteer_proxy_ejections",
            "Endpoints ejected by outlier detection, by the count that did it",
            "reason",
            &counts,
        )?;
        let gauge = ConstGauge::new(i64::try_from(self.0.list().len()).unwrap_or(i64::MAX));
        gauge.encode(encoder.encode_descriptor(
            "vsteer_proxy_ejected_endpoints",
            "Ejections in force now (an endpoint ejected by two clusters counts twice)",
            None,
            gauge.metric_type(),
        )?)
    }
}
