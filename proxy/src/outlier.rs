//! Outlier detection per cluster, as Envoy runs it for Istio's `outlierDetection`: each try's
//! outcome is reported to its endpoint's record; consecutive 5xx (or the configured error
//! codes), gateway errors (502, 503, 504) or local failures (connect failure, reset,
//! timeout) eject the endpoint at once, unless `maxEjectionPercent` of the cluster is out
//! already (one ejection is always allowed); an ejection lasts `baseEjectionTime` times the
//! endpoint's ejections so far (capped), and ends at the first `interval` tick after that;
//! every tick an endpoint spends in the pool takes one off its count. Every ejection is
//! published in [`Ejections`], which the agent shows and feeds into the kernel's tables.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use rustc_hash::FxHashMap;
use vsteer_plan::http::OutlierDetection;

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EjectionReason {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocalOrigin,
}

impl EjectionReason {
    /// As Istio's field names it.
    pub fn name(self) -> &'static str {
        match self {
            EjectionReason::Consecutive5xx => "consecutive5xxErrors",
            EjectionReason::ConsecutiveGateway => "consecutiveGatewayErrors",
            EjectionReason::ConsecutiveLocalOrigin => "consecutiveLocalOriginFailures",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one try at an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer: the connect failed or the connection was reset.
    LocalFailure,
    /// No answer in time.
    Timeout,
    /// A connection (TLS passthrough) was made: the endpoint is reachable.
    Connected,
}

/// One ejection in force, as shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejection {
    pub address: SocketAddr,
    /// The cluster (Envoy's name: host, subset, port) that ejected it.
    pub cluster: String,
    pub reason: EjectionReason,
    /// The failures in a row that did it.
    pub failures: u32,
    pub since: SystemTime,
    /// When it ends at the earliest (the first interval tick after this).
    pub until: SystemTime,
    /// This endpoint's ejections in the multiplier of its ejection time.
    pub times: u32,
}

/// Every ejection in force on the node, and how many there were; told to subscribers on
/// each change. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Ejections {
    inner: Arc<Feed>,
}

#[derive(Debug)]
struct Feed {
    /// By (endpoint, detector id): an endpoint may be ejected by several clusters.
    map: Mutex<BTreeMap<(SocketAddr, u64), Ejection>>,
    /// Ejections so far, by reason.
    counts: [AtomicU64; 3],
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Ejections {
    fn default() -> Self {
        Ejections {
            inner: Arc::new(Feed {
                map: Mutex::new(BTreeMap::new()),
                counts: Default::default(),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

impl Ejections {
    /// The ejections in force, by endpoint.
    pub fn list(&self) -> Vec<Ejection> {
        self.lock().values().cloned().collect()
    }

    /// The endpoints some cluster has ejected now.
    pub fn addresses(&self) -> BTreeSet<SocketAddr> {
        self.lock().keys().map(|(addr, _)| *addr).collect()
    }

    /// Told (a new number) at each ejection and each end of one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Ejections so far, by reason.
    pub fn counts(&self) -> [(EjectionReason, u64); 3] {
        [
            EjectionReason::Consecutive5xx,
            EjectionReason::ConsecutiveGateway,
            EjectionReason::ConsecutiveLocalOrigin,
        ]
        .map(|r| (r, self.inner.counts[r.index()].load(Ordering::Relaxed)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(SocketAddr, u64), Ejection>> {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, id: u64, ejection: Ejection) {
        self.inner.counts[ejection.reason.index()].fetch_add(1, Ordering::Relaxed);
        self.lock().insert((ejection.address, id), ejection);
        self.told();
    }

    fn remove(&self, id: u64, addrs: &[SocketAddr]) {
        let removed = {
            let mut map = self.lock();
            addrs
                .iter()
                .filter(|a| map.remove(&(**a, id)).is_some())
                .count()
        };
        if removed > 0 {
            self.told();
        }
    }

    fn told(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One endpoint's record in one cluster's detector.
#[derive(Debug)]
pub(crate) struct HostHealth {
    addr: SocketAddr,
    ejected: AtomicBool,
    record: Mutex<Record>,
}

#[derive(Debug, Default)]
struct Record {
    five_xx: u32,
    gateway: u32,
    local: u32,
    /// The multiplier of the next ejection's time, less one.
    ejections: u32,
    until: Option<Instant>,
}

impl HostHealth {
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }
}

/// One cluster's detector: its settings and its endpoints' records.
#[derive(Debug)]
pub(crate) struct ClusterOutlier {
    id: u64,
    name: Box<str>,
    settings: OutlierDetection,
    /// The cluster's endpoints now (what `maxEjectionPercent` is a share of).
    hosts: Mutex<FxHashMap<SocketAddr, Arc<HostHealth>>>,
    ejected: AtomicUsize,
    /// The interval task runs (while an endpoint is ejected or has ejections to forget).
    ticking: AtomicBool,
    feed: Ejections,
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for ClusterOutlier {
    fn drop(&mut self) {
        let addrs: Vec<SocketAddr> = self.lock_hosts().keys().copied().collect();
        self.feed.remove(self.id, &addrs);
    }
}

impl ClusterOutlier {
    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, FxHashMap<SocketAddr, Arc<HostHealth>>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster's endpoints are `addrs` from now on; their records, kept from before
    /// where they were there (an endpoint that left takes its ejection with it).
    pub(crate) fn hosts(&self, addrs: &[SocketAddr]) -> Vec<Arc<HostHealth>> {
        let mut hosts = self.lock_hosts();
        let gone: Vec<SocketAddr> = hosts
            .keys()
            .filter(|a| !addrs.contains(a))
            .copied()
            .collect();
        for addr in &gone {
            if let Some(host) = hosts.remove(addr)
                && host.ejected.swap(false, Ordering::AcqRel)
            {
                self.ejected.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.feed.remove(self.id, &gone);
        addrs
            .iter()
            .map(|addr| {
                hosts
                    .entry(*addr)
                    .or_insert_with(|| {
                        Arc::new(HostHealth {
                            addr: *addr,
                            ejected: AtomicBool::new(false),
                            record: Mutex::new(Record::default()),
                        })
                    })
                    .clone()
            })
            .collect()
    }

    /// Whether ejections are ignored now: fewer endpoints than `minHealthPercent` are in
    /// the pool (Envoy's panic threshold).
    pub(crate) fn panics(&self, endpoints: usize) -> bool {
        let ejected = self.ejected.load(Ordering::Acquire);
        ejected > 0
            && ((endpoints.saturating_sub(ejected)) as u64) * 100
                < u64::from(self.settings.min_health_percent) * endpoints as u64
    }

    /// Counts one try's outcome at `host`; ejects it when a count reaches its threshold.
    pub(crate) fn report(self: &Arc<Self>, host: &Arc<HostHealth>, outcome: Outcome) {
        if host.is_ejected() {
            return;
        }
        let s = &self.settings;
        let triggered = {
            let mut r = host.record.lock().unwrap_or_else(|e| e.into_inner());
            if outcome == Outcome::Connected {
                // As Envoy maps a connect success: the local count starts again, and without
                // the split the 5xx and gateway counts too.
                r.local = 0;
                if !s.split_local_origin {
                    (r.five_xx, r.gateway) = (0, 0);
                }
                return;
            }
            // Without the split, a local failure counts as Envoy maps it: 503, or 504 for a
            // timeout.
            let status = match outcome {
                Outcome::Status(code) => Some(code),
                Outcome::LocalFailure if !s.split_local_origin => Some(503),
                Outcome::Timeout if !s.split_local_origin => Some(504),
                Outcome::LocalFailure | Outcome::Timeout | Outcome::Connected => None,
            };
            match status {
                Some(code) => {
                    // The error codes judge responses; a local failure counts as the 5xx
                    // it is mapped to, as Envoy's matcher sees only response headers.
                    let error = match outcome {
                        Outcome::Status(_) if !s.error_codes.is_empty() => {
                            s.error_codes.contains(&code)
                        }
                        _ => code >= 500,
                    };
                    r.five_xx = if error { r.five_xx + 1 } else { 0 };
                    r.gateway = if (502..=504).contains(&code) {
                        r.gateway + 1
                    } else {
                        0
                    };
                    if matches!(outcome, Outcome::Status(_)) {
                        // The endpoint was reached.
                        r.local = 0;
                    }
                }
                None => r.local += 1,
            }
            let reached =
                |count: u32, threshold: Option<u32>| threshold.is_some_and(|t| count >= t);
            let reason = if reached(r.five_xx, s.consecutive_5xx) {
                Some((EjectionReason::Consecutive5xx, r.five_xx))
            } else if reached(r.gateway, s.consecutive_gateway) {
                Some((EjectionReason::ConsecutiveGateway, r.gateway))
            } else if reached(r.local, s.consecutive_local_origin) {
                Some((EjectionReason::ConsecutiveLocalOrigin, r.local))
            } else {
                None
            };
            if let Some((reason, _)) = reason {
                // The count starts again, ejected or not (as Envoy resets it).
                match reason {
                    EjectionReason::Consecutive5xx => r.five_xx = 0,
                    EjectionReason::ConsecutiveGateway => r.gateway = 0,
                    EjectionReason::ConsecutiveLocalOrigin => r.local = 0,
                }
            }
            reason
        };
        if let Some((reason, failures)) = triggered {
            self.eject(host, reason, failures);
        }
    }

    fn eject(self: &Arc<Self>, host: &Arc<HostHealth>, reason: EjectionReason, failures: u32) {
        let hosts = self.lock_hosts();
        // A record of an endpoint that left the cluster since (an older table's) ejects nothing.
        if !hosts.get(&host.addr).is_some_and(|h| Arc::ptr_eq(h, host)) {
            return;
        }
        let active = self.ejected.load(Ordering::Acquire);
        let share = (active as u64 + 1) * 100;
        if active > 0 && share > u64::from(self.settings.max_ejection_percent) * hosts.len() as u64
        {
            tracing::debug!(
                "{} ({}): {} reached, not ejected: {active} of {} endpoints are out \
                 (maxEjectionPercent {})",
                self.name,
                host.addr,
                reason.name(),
                hosts.len(),
                self.settings.max_ejection_percent
            );
            return;
        }
        let (times, time) = {
            let mut r = host.record.lock().unwrap_or_else(|e| e.into_inner());
            if host.ejected.swap(true, Ordering::AcqRel) {
                return;
            }
            let (base, max) = (
                self.settings.base_ejection_time,
                self.settings.max_ejection_time,
            );
            // As Envoy: the multiplier grows only while its time is under the cap plus a
            // base, so that it decays as soon as the endpoint keeps well.
            if base.saturating_mul(r.ejections) < max.saturating_add(base) {
                r.ejections += 1;
            }
            let time = base.saturating_mul(r.ejections).min(max);
            r.until = Some(Instant::now() + time);
            (r.ejections, time)
        };
        self.ejected.fetch_add(1, Ordering::AcqRel);
        let now = SystemTime::now();
        tracing::info!(
            "{} ({}): ejected for {time:?} after {failures} failures in a row ({})",
            self.name,
            host.addr,
            reason.name()
        );
        self.feed.insert(
            self.id,
            Ejection {
                address: host.addr,
                cluster: self.name.to_string(),
                reason,
                failures,
                since: now,
                until: now + time,
                times,
            },
        );
        self.start_ticking();
        drop(hosts);
    }

    /// Starts the interval task unless it runs (called with the hosts locked, so that it
    /// cannot be seen ending meanwhile).
    fn start_ticking(self: &Arc<Self>) {
        if self.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        // The registry's runtime (the agent's, which outlives every proxy worker), else
        // the reporting worker's.
        let Some(runtime) = self
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            self.ticking.store(false, Ordering::Release);
            return;
        };
        let (detector, interval) = (Arc::downgrade(self), self.settings.interval);
        runtime.spawn(tick(detector, interval));
    }

    /// One interval's work: ends the ejections that have run their time, takes one off the
    /// count of each endpoint in the pool; whether there is work left for another tick.
    fn on_interval(&self) -> bool {
        let hosts = self.lock_hosts();
        let now = Instant::now();
        let mut ended = Vec::new();
        let mut pending = false;
        for host in hosts.values() {
            let mut r = host.record.lock().unwrap_or_else(|e| e.into_inner());
            if host.is_ejected() {
                if r.until.is_some_and(|until| now >= until) {
                    host.ejected.store(false, Ordering::Release);
                    self.ejected.fetch_sub(1, Ordering::AcqRel);
                    (r.five_xx, r.gateway, r.local, r.until) = (0, 0, 0, None);
                    ended.push(host.addr);
                }
                pending = true;
            } else if r.ejections > 0 {
                r.ejections -= 1;
                pending |= r.ejections > 0;
            }
        }
        if !ended.is_empty() {
            tracing::info!("{}: ejection over for {ended:?}", self.name);
            self.feed.remove(self.id, &ended);
        }
        if !pending {
            self.ticking.store(false, Ordering::Release);
        }
        pending
    }
}

async fn tick(detector: Weak<ClusterOutlier>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticks.tick().await;
        let Some(detector) = detector.upgrade() else {
            return;
        };
        if !detector.on_interval() {
            return;
        }
    }
}

/// A detector's cluster name and settings.
type DetectorKey = (Box<str>, OutlierDetection);

/// Every cluster's detector, by (name, settings); tables hold them, this only finds them.
#[derive(Debug)]
pub(crate) struct Outliers {
    map: Mutex<FxHashMap<DetectorKey, Weak<ClusterOutlier>>>,
    next_id: AtomicU64,
    pub feed: Ejections,
    /// Where the interval tasks run: the runtime the tables were made on (the agent's),
    /// so that ejections end even if the worker that made one has gone.
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for Outliers {
    fn default() -> Self {
        Outliers {
            map: Mutex::default(),
            next_id: AtomicU64::new(0),
            feed: Ejections::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl Outliers {
    /// The detector of cluster `name` under `settings`; `None` without outlier detection.
    pub(crate) fn get(
        &self,
        name: &str,
        settings: Option<&OutlierDetection>,
    ) -> Option<Arc<ClusterOutlier>> {
        let settings = settings?;
        let key = (Box::from(name), settings.clone());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(detector) = map.get(&key).and_then(Weak::upgrade) {
            return Some(detector);
        }
        let detector = Arc::new(ClusterOutlier {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            settings: settings.clone(),
            hosts: Mutex::new(FxHashMap::default()),
            ejected: AtomicUsize::new(0),
            ticking: AtomicBool::new(false),
            feed: self.feed.clone(),
            runtime: self.runtime.clone(),
        });
        map.insert(key, Arc::downgrade(&detector));
        Some(detector)
    }

    /// Forgets detectors no table holds any more.
    pub(crate) fn prune(&self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, d| d.strong_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    fn detector(settings: OutlierDetection, n: u8) -> (Outliers, Arc<ClusterOutlier>) {
        let outliers = Outliers::default();
        let d = outliers.get("c", Some(&settings)).expect("a detector");
        let addrs: Vec<SocketAddr> = (1..=n).map(addr).collect();
        d.hosts(&addrs);
        (outliers, d)
    }

    fn host(d: &ClusterOutlier, i: u8) -> Arc<HostHealth> {
        d.lock_hosts()[&addr(i)].clone()
    }

    fn fail(d: &Arc<ClusterOutlier>, i: u8, times: usize, outcome: Outcome) {
        let h = host(d, i);
        for _ in 0..times {
            d.report(&h, outcome);
        }
    }

    #[test]
    fn consecutive_5xx_eject_and_a_success_starts_the_count_again() {
        let (outliers, d) = detector(
            OutlierDetection {
                consecutive_5xx: Some(3),
                max_ejection_percent: 100,
                ..OutlierDetection::default()
            },
            2,
        );
        fail(&d, 1, 2, Outcome::Status(500));
        fail(&d, 1, 1, Outcome::Status(200));
        fail(&d, 1, 2, Outcome::Status(503));
        assert!(!host(&d, 1).is_ejected());
        fail(&d, 1, 1, Outcome::LocalFailure);
        assert!(host(&d, 1).is_ejected());
        let list = outliers.feed.list();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (
                list[0].address,
                list[0].reason,
                list[0].failures,
                list[0].times
            ),
            (addr(1), EjectionReason::Consecutive5xx, 3, 1)
        );
        assert_eq!(outliers.feed.counts()[0].1, 1);
    }

    #[test]
    fn gateway_errors_count_only_502_to_504_and_only_when_set() {
        let settings = OutlierDetection {
            consecutive_5xx: None,
            consecutive_gateway: Some(2),
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (_o, d) = detector(settings, 2);
        fail(&d, 1, 5, Outcome::Status(500));
        assert!(!host(&d, 1).is_ejected(), "500 is no gateway error");
        fail(&d, 1, 2, Outcome::Status(502));
        assert!(host(&d, 1).is_ejected());
    }

    #[test]
    fn local_failures_count_apart_only_with_the_split() {
        let split = OutlierDetection {
            consecutive_5xx: Some(2),
            consecutive_local_origin: Some(3),
            split_local_origin: true,
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (_o, d) = detector(split, 2);
        fail(&d, 1, 2, Outcome::Timeout);
        assert!(!host(&d, 1).is_ejected(), "no 5xx counted");
        fail(&d, 1, 1, Outcome::LocalFailure);
        assert!(host(&d, 1).is_ejected());
    }

    #[test]
    fn error_codes_replace_5xx() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(2),
            error_codes: vec![429],
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (_o, d) = detector(settings, 2);
        fail(&d, 1, 3, Outcome::Status(500));
        assert!(!host(&d, 1).is_ejected());
        fail(&d, 1, 2, Outcome::Status(429));
        assert!(host(&d, 1).is_ejected());
    }

    #[test]
    fn max_ejection_percent_allows_one_ejection_and_no_more_than_its_share() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(1),
            max_ejection_percent: 50,
            ..OutlierDetection::default()
        };
        let (outliers, d) = detector(settings.clone(), 4);
        for i in 1..=4 {
            fail(&d, i, 1, Outcome::Status(500));
        }
        let out = (1..=4).filter(|i| host(&d, *i).is_ejected()).count();
        assert_eq!(out, 2, "50% of 4");
        assert_eq!(outliers.feed.addresses().len(), 2);
        // 10% of 2 endpoints is none, but one ejection is always allowed.
        let (_o, d) = detector(
            OutlierDetection {
                max_ejection_percent: 10,
                ..settings
            },
            2,
        );
        fail(&d, 1, 1, Outcome::Status(500));
        fail(&d, 2, 1, Outcome::Status(500));
        assert!(host(&d, 1).is_ejected() && !host(&d, 2).is_ejected());
    }

    #[test]
    fn panic_below_min_health_percent() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(1),
            max_ejection_percent: 100,
            min_health_percent: 60,
            ..OutlierDetection::default()
        };
        let (_o, d) = detector(settings, 2);
        assert!(!d.panics(2));
        fail(&d, 1, 1, Outcome::Status(500));
        assert!(d.panics(2), "1 of 2 in the pool is under 60%");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejection_ends_at_the_first_tick_after_its_time_and_grows_when_repeated() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(1),
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_millis(2500),
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (outliers, d) = detector(settings, 2);
        let mut told = outliers.feed.subscribe();
        fail(&d, 1, 1, Outcome::Status(500));
        assert!(told.has_changed().expect("a feed"));
        told.mark_unchanged();
        // Ticks at 1, 2, 3 s: the 2.5 s ejection ends at the third.
        tokio::time::sleep(Duration::from_millis(2900)).await;
        assert!(host(&d, 1).is_ejected());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!host(&d, 1).is_ejected());
        assert!(outliers.feed.list().is_empty());
        assert!(told.has_changed().expect("a feed"));
        // Ejected again at once: twice the base (the tick that ended it took nothing off).
        fail(&d, 1, 1, Outcome::Status(500));
        assert_eq!(outliers.feed.list()[0].times, 2);
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(host(&d, 1).is_ejected(), "5 s, not 2.5 s");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!host(&d, 1).is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn the_multiplier_stops_growing_past_the_cap_as_envoys() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(1),
            interval: Duration::from_millis(100),
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(3),
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (outliers, d) = detector(settings, 2);
        let mut times = Vec::new();
        // Failing again the moment each ejection ends (no tick in the pool to forget one).
        for _ in 0..6 {
            fail(&d, 1, 1, Outcome::Status(500));
            times.push(outliers.feed.list()[0].times);
            let since = Instant::now();
            while host(&d, 1).is_ejected() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                since.elapsed() <= Duration::from_millis(3110),
                "past the 3 s cap"
            );
        }
        assert_eq!(times, [1, 2, 3, 4, 4, 4]);
    }

    #[test]
    fn a_local_failure_counts_as_a_5xx_whatever_the_error_codes() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(2),
            error_codes: vec![429],
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (_o, d) = detector(settings, 2);
        fail(&d, 1, 2, Outcome::LocalFailure);
        assert!(host(&d, 1).is_ejected(), "a dead endpoint is ejected");
    }

    #[test]
    fn an_endpoint_that_leaves_takes_its_ejection_with_it() {
        let settings = OutlierDetection {
            consecutive_5xx: Some(1),
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let (outliers, d) = detector(settings, 2);
        let old = host(&d, 1);
        fail(&d, 1, 1, Outcome::Status(500));
        assert_eq!(outliers.feed.addresses().len(), 1);
        d.hosts(&[addr(2)]);
        assert!(outliers.feed.addresses().is_empty());
        assert_eq!(d.ejected.load(Ordering::Acquire), 0);
        // The old record ejects nothing now.
        d.hosts(&[addr(1), addr(2)]);
        d.report(&old, Outcome::Status(500));
        assert!(outliers.feed.addresses().is_empty());
        drop(d);
    }
}
