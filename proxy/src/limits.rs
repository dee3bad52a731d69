//! A cluster's `connectionPool` limits, as Envoy's circuit breakers count them: upstream
//! connections of all its endpoints together, requests waiting for a connection, requests
//! in flight. A slot is held while what it counts lives; over a limit the request is
//! answered 503 at once (`x-envoy-overloaded`), never queued beyond the pending limit.
//! Shared by every table that names the cluster with the same limits, so a table change
//! keeps the counts of connections still open.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use vsteer_plan::http::ConnectionLimits;

#[derive(Debug)]
pub(crate) struct ClusterLimits {
    pub settings: ConnectionLimits,
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    /// Told (every waiter) when a connection closes or goes back idle: pending requests look
    /// again, each at its own endpoint.
    freed: Notify,
}

/// What one slot counts.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Connection,
    Pending,
    Request,
}

/// A counted connection, pending request or request in flight, until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ClusterLimits>,
    counted: Counted,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits
            .counter(self.counted)
            .fetch_sub(1, Ordering::AcqRel);
        if matches!(self.counted, Counted::Connection) {
            self.limits.wake();
        }
    }
}

impl ClusterLimits {
    fn new(settings: ConnectionLimits) -> ClusterLimits {
        ClusterLimits {
            settings,
            connections: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            freed: Notify::new(),
        }
    }

    fn counter(&self, counted: Counted) -> &AtomicU32 {
        match counted {
            Counted::Connection => &self.connections,
            Counted::Pending => &self.pending,
            Counted::Request => &self.requests,
        }
    }

    /// A slot of `counted` if one is below `max` (none: unlimited).
    fn take(self: &Arc<Self>, counted: Counted, max: Option<u32>) -> Option<Slot> {
        let counter = self.counter(counted);
        let max = max.unwrap_or(u32::MAX);
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            limits: self.clone(),
            counted,
        })
    }

    /// Room for one more upstream connection.
    pub(crate) fn connection(self: &Arc<Self>) -> Option<Slot> {
        self.take(Counted::Connection, self.settings.max_connections)
    }

    /// A connection counted beyond the limit (an endpoint's first: see
    /// `EndpointPool::reserve`).
    pub(crate) fn extra_connection(self: &Arc<Self>) -> Slot {
        self.connections.fetch_add(1, Ordering::AcqRel);
        Slot {
            limits: self.clone(),
            counted: Counted::Connection,
        }
    }

    /// Whether a connection could be opened within the limit now.
    pub(crate) fn connection_room(&self) -> bool {
        self.connections.load(Ordering::Acquire) < self.settings.max_connections.unwrap_or(u32::MAX)
    }

    /// Room for one more request waiting for a connection.
    pub(crate) fn pending(self: &Arc<Self>) -> Option<Slot> {
        self.take(Counted::Pending, self.settings.max_pending_requests)
    }

    /// Room for one more request in flight.
    pub(crate) fn request(self: &Arc<Self>) -> Option<Slot> {
        self.take(Counted::Request, self.settings.max_requests)
    }

    /// Resolves when a connection next closes or goes back idle; enable it before looking
    /// for one, so that no wakeup is missed in between.
    pub(crate) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// A connection closed or went back idle: every pending request looks again.
    pub(crate) fn wake(&self) {
        self.freed.notify_waiters();
    }

    /// Upstream connections open now.
    #[cfg(test)]
    pub(crate) fn connections(&self) -> u32 {
        self.connections.load(Ordering::Acquire)
    }
}

/// Every limited cluster's counts, by name and limits; tables hold them, this only finds
/// them.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    map: Mutex<FxHashMap<ClusterKey, Weak<ClusterLimits>>>,
}

type ClusterKey = (Box<str>, ConnectionLimits);

impl Limits {
    /// The counts of cluster `name` under `settings`; `None` for an unlimited cluster.
    pub(crate) fn get(
        &self,
        name: &str,
        settings: &ConnectionLimits,
    ) -> Option<Arc<ClusterLimits>> {
        if settings.is_unlimited() {
            return None;
        }
        let key = (Box::from(name), *settings);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limits) = map.get(&key).and_then(Weak::upgrade) {
            return Some(limits);
        }
        let limits = Arc::new(ClusterLimits::new(*settings));
        map.insert(key, Arc::downgrade(&limits));
        Some(limits)
    }

    /// Forgets clusters no table holds any more.
    pub(crate) fn prune(&self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, limits| limits.strong_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_limit_and_come_back_when_dropped() {
        let limits = Limits::default();
        let settings = ConnectionLimits {
            max_connections: Some(1),
            max_pending_requests: Some(2),
            ..ConnectionLimits::default()
        };
        let cluster = limits.get("c", &settings).expect("limited");
        let first = cluster.connection().expect("one connection");
        assert!(cluster.connection().is_none(), "a second is over the limit");
        let pending: Vec<Slot> = (0..2).filter_map(|_| cluster.pending()).collect();
        assert_eq!(pending.len(), 2);
        assert!(cluster.pending().is_none());
        // Requests in flight are not limited here.
        let requests: Vec<Slot> = (0..100).filter_map(|_| cluster.request()).collect();
        assert_eq!(requests.len(), 100);
        drop(first);
        assert_eq!(cluster.connections(), 0);
        assert!(cluster.connection().is_some());
        // The same name and limits find the same counts; other limits, others.
        assert!(Arc::ptr_eq(&cluster, &limits.get("c", &settings).unwrap()));
        let other = ConnectionLimits {
            max_connections: Some(2),
            ..settings
        };
        assert!(!Arc::ptr_eq(&cluster, &limits.get("c", &other).unwrap()));
        assert!(limits.get("c", &ConnectionLimits::default()).is_none());
    }
}
