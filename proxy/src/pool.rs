//! Upstream connections kept per endpoint (address and protocol), shared by every route
//! table that names the endpoint, so a table change keeps warm connections: idle HTTP/1.1
//! connections (last used first out), one multiplexed HTTP/2 connection, and the endpoint's
//! count of requests in flight (what LEAST_REQUEST compares). An endpoint of a cluster with
//! `connectionPool` limits has a pool of that cluster's own, whose connections its limits
//! count.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};
use rustc_hash::FxHashMap;

use crate::limits::ClusterLimits;
use crate::request_body::RequestBody;

pub(crate) type H1Sender = http1::SendRequest<RequestBody>;
pub(crate) type H2Sender = http2::SendRequest<RequestBody>;

#[derive(Debug)]
pub(crate) struct EndpointPool {
    pub addr: SocketAddr,
    pub http2: bool,
    /// The limits of the cluster this pool is for alone; `None`: shared by every
    /// unlimited cluster naming the endpoint.
    pub limits: Option<Arc<ClusterLimits>>,
    active: AtomicU32,
    /// Connections open or being opened to the endpoint (see [`EndpointPool::reserve`]).
    connections: AtomicU32,
    /// Idle connections: the worker whose runtime drives each, and the requests it carried.
    idle: Mutex<Vec<Idle>>,
    shared: Mutex<Option<H2Sender>>,
    /// Held while the HTTP/2 connection is (re)established, so concurrent requests wait for
    /// one connection instead of each opening their own.
    pub(crate) connecting: tokio::sync::Mutex<()>,
    /// Failed HTTP/2 connects: a request that waited for another's attempt, which failed,
    /// fails at once rather than trying again in turn.
    pub(crate) h2_failures: std::sync::atomic::AtomicU64,
}

/// An idle HTTP/1.1 connection.
#[derive(Debug)]
struct Idle {
    sender: H1Sender,
    since: Instant,
    worker: usize,
    uses: u32,
}

impl EndpointPool {
    fn new(addr: SocketAddr, http2: bool, limits: Option<Arc<ClusterLimits>>) -> EndpointPool {
        EndpointPool {
            addr,
            http2,
            limits,
            active: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            h2_failures: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A new connection's place, held while it is open: a slot of the cluster's limits, or,
    /// when this endpoint has no connection at all, one beyond them, as Envoy's pools do, so
    /// that idle connections to other endpoints never leave this one's requests waiting.
    /// `None`: no room (a limited cluster only); the request waits or overflows.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<Reserved> {
        let slot = match &self.limits {
            None => None,
            Some(limits) => match limits.connection() {
                Some(slot) => Some(slot),
                None => {
                    self.connections
                        .compare_exchange(0, 1, Relaxed, Relaxed)
                        .ok()?;
                    return Some(Reserved {
                        _slot: Some(limits.extra_connection()),
                        pool: Arc::downgrade(self),
                    });
                }
            },
        };
        self.connections.fetch_add(1, Relaxed);
        Some(Reserved {
            _slot: slot,
            pool: Arc::downgrade(self),
        })
    }

    /// Whether a waiting request should look again now: an idle connection here, room for
    /// a new one, or this endpoint without any.
    pub(crate) fn worth_a_look(&self) -> bool {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|i| i.sender.is_ready());
        idle || self.connections.load(Relaxed) == 0
            || self.limits.as_ref().is_some_and(|l| l.connection_room())
    }

    /// Requests sent to this endpoint whose response has not ended.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    /// An idle HTTP/1.1 connection ready for a request, not older than `max_age`, the
    /// worker that drives it and the requests it carried: the most recently used one of this
    /// worker's (its connection task runs on this thread, so no request crosses threads),
    /// else another worker's.
    pub(crate) fn checkout_h1(&self, max_age: Duration) -> Option<(H1Sender, usize, u32)> {
        let (worker, now) = (worker(), Instant::now());
        let usable = |i: &Idle| i.sender.is_ready() && now.duration_since(i.since) < max_age;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest are first: prune once the first one is of no use any more.
        if idle
            .first()
            .is_some_and(|i| i.sender.is_closed() || now.duration_since(i.since) >= max_age)
        {
            idle.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < max_age);
        }
        let at = idle
            .iter()
            .rposition(|i| i.worker == worker && usable(i))
            .or_else(|| idle.iter().rposition(usable))?;
        let Idle {
            sender,
            worker,
            uses,
            ..
        } = idle.remove(at);
        Some((sender, worker, uses))
    }

    fn put_h1(&self, sender: H1Sender, max_idle: usize, worker: usize, uses: u32) {
        let spent = self
            .limits
            .as_ref()
            .and_then(|l| l.settings.max_requests_per_connection)
            .is_some_and(|max| uses >= max);
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if spent || idle.len() >= max_idle {
                // Dropped: the connection closes, and its slot frees when it has.
                return;
            }
            idle.push(Idle {
                sender,
                since: Instant::now(),
                worker,
                uses,
            });
        }
        if let Some(limits) = &self.limits {
            limits.wake();
        }
    }

    /// The shared HTTP/2 connection, if it still takes requests.
    pub(crate) fn h2(&self) -> Option<H2Sender> {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.as_ref().filter(|s| s.is_ready()).cloned()
    }

    pub(crate) fn set_h2(&self, sender: Option<H2Sender>) {
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = sender;
    }
}

/// A connection's place at its endpoint and in its cluster's limits, until dropped.
#[derive(Debug)]
pub(crate) struct Reserved {
    /// Released after the pool's count (fields drop after `drop`): its release wakes the
    /// pending requests, which then see both.
    _slot: Option<crate::limits::Slot>,
    /// Weak: the connection's task holds this, and the pool holds the connection's sender;
    /// a pool no table holds any more must go, and close its idle connections with it.
    pool: Weak<EndpointPool>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.connections.fetch_sub(1, Relaxed);
        }
    }
}

/// Counts a request in flight to an endpoint until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<EndpointPool>);

impl InFlight {
    pub(crate) fn new(pool: &Arc<EndpointPool>) -> InFlight {
        pool.active.fetch_add(1, Relaxed);
        InFlight(pool.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// An HTTP/1.1 connection carrying a response; dropped (the response ended or was
/// abandoned), it goes back to its pool once hyper has it ready for the next request.
#[derive(Debug)]
pub(crate) struct PooledH1 {
    pool: Arc<EndpointPool>,
    sender: Option<H1Sender>,
    max_idle: usize,
    /// The worker whose runtime drives the connection.
    worker: usize,
    /// Requests it carried, this one included.
    uses: u32,
}

impl PooledH1 {
    pub(crate) fn new(
        pool: Arc<EndpointPool>,
        sender: H1Sender,
        max_idle: usize,
        worker: usize,
        uses: u32,
    ) -> PooledH1 {
        PooledH1 {
            pool,
            sender: Some(sender),
            max_idle,
            worker,
            uses,
        }
    }
}

impl Drop for PooledH1 {
    fn drop(&mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        let (max_idle, worker, uses) = (self.max_idle, self.worker, self.uses);
        if sender.is_ready() {
            self.pool.put_h1(sender, max_idle, worker, uses);
        } else if !sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // hyper finishes the exchange on its connection task; wait for it there.
            let pool = self.pool.clone();
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put_h1(sender, max_idle, worker, uses);
                }
            });
        }
    }
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as worker `id`'s (its runtime drives the upstream connections
/// opened here).
pub(crate) fn set_worker(id: usize) {
    WORKER.with(|w| w.set(id));
}

/// The worker of the current thread (0 where none was set).
pub(crate) fn worker() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// Every endpoint's pool, by (address, HTTP/2, the limited cluster it is for: its limits'
/// address, 0 for none); tables hold the pools, this only finds them.
#[derive(Debug, Default)]
pub(crate) struct Pools {
    map: Mutex<FxHashMap<(SocketAddr, bool, usize), Weak<EndpointPool>>>,
    /// The counts of limited clusters.
    limits: crate::limits::Limits,
    /// The outlier detectors of clusters that have one, and their ejections.
    pub(crate) outliers: crate::outlier::Outliers,
}

impl Pools {
    /// The counts of cluster `name` under `settings`; `None` for an unlimited cluster.
    pub(crate) fn cluster_limits(
        &self,
        name: &str,
        settings: &vsteer_plan::http::ConnectionLimits,
    ) -> Option<Arc<ClusterLimits>> {
        self.limits.get(name, settings)
    }

    pub(crate) fn get(
        &self,
        addr: SocketAddr,
        http2: bool,
        limits: Option<&Arc<ClusterLimits>>,
    ) -> Arc<EndpointPool> {
        // The pool holds its limits, so the address is not reused while the entry lives.
        let key = (addr, http2, limits.map_or(0, |l| Arc::as_ptr(l) as usize));
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = map.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(EndpointPool::new(addr, http2, limits.cloned()));
        map.insert(key, Arc::downgrade(&pool));
        pool
    }

    /// Forgets pools no table holds any more.
    pub(crate) fn prune(&self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, pool| pool.strong_count() > 0);
        drop(map);
        self.limits.prune();
        self.outliers.prune();
    }
}
