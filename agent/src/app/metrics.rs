//! The agent's own metrics (the proxy registers its own): how long a change takes from its
//! first event to the kernel maps, what the plan holds, what was rejected, what failed, and in
//! Kubernetes mode the objects watched, by kind.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

/// Where an error happened, for `vsteer_errors_total{step}`.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// The config could not be read.
    Read,
    /// The kernel maps could not be written.
    Write,
    /// A Kubernetes watch failed (it retries).
    Watch,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Read => "read",
            Step::Write => "write",
            Step::Watch => "watch",
        }
    }
}

#[derive(Clone)]
pub struct AgentMetrics {
    sync_latency: Histogram,
    services: Gauge,
    rejected: Counter,
    errors: Family<StepLabel, Counter>,
    objects: Family<KindLabel, Gauge>,
}

impl AgentMetrics {
    pub fn register(registry: &mut Registry) -> AgentMetrics {
        let metrics = AgentMetrics {
            // 1 ms to 16 s.
            sync_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            services: Gauge::default(),
            rejected: Counter::default(),
            errors: Family::default(),
            objects: Family::default(),
        };
        registry.register(
            "vsteer_sync_latency_seconds",
            "From the first event of a change (a file written, an API object changed) to the kernel maps written, file settle and Kubernetes debounce included",
            metrics.sync_latency.clone(),
        );
        registry.register(
            "vsteer_services",
            "VIP:port services in the plan",
            metrics.services.clone(),
        );
        registry.register(
            "vsteer_rejected",
            "Resources rejected (each report of one: a resource still broken is counted again when it changes)",
            metrics.rejected.clone(),
        );
        registry.register(
            "vsteer_errors",
            "Errors by step: read (config), write (kernel maps), watch (Kubernetes API)",
            metrics.errors.clone(),
        );
        registry.register(
            "vsteer_kubernetes_objects",
            "Objects the Kubernetes watches hold, by kind",
            metrics.objects.clone(),
        );
        metrics
    }

    /// A pass written: `latency` from its change's first event (`None`: the start).
    pub fn applied(&self, latency: Option<Duration>, services: usize, rejected: usize) {
        if let Some(latency) = latency {
            self.sync_latency.observe(latency.as_secs_f64());
        }
        self.services
            .set(i64::try_from(services).unwrap_or(i64::MAX));
        self.rejected.inc_by(rejected as u64);
    }

    pub fn error(&self, step: Step) {
        self.errors
            .get_or_create(&StepLabel { step: step.name() })
            .inc();
    }

    /// The counter of one step's errors, for a task that counts them itself.
    pub fn errors_of(&self, step: Step) -> Counter {
        self.errors
            .get_or_create(&StepLabel { step: step.name() })
            .clone()
    }

    pub fn objects(&self, counts: &[(&'static str, usize)]) {
        for (kind, count) in counts {
            self.objects
                .get_or_create(&KindLabel { kind })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }
}
