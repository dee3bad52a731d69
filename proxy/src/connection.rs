//! One accepted connection: hyper-util's auto server (HTTP/1.1 with keep-alive, or HTTP/2
//! with prior knowledge) routing each request on its own, and the bounds on it: a first
//! request within the header read timeout (hyper has no timer while it sniffs the protocol),
//! closing after the idle timeout with nothing in flight, and a graceful drain on shutdown or
//! when its service leaves the proxy (requests until then served by the last table the
//! connection saw: the client reconnects, and the kernel serves it, without seeing a 503).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use arc_swap::ArcSwap;

use crate::compiled::CompiledTable;
use crate::forward;
use crate::proxy::Shared;
use crate::stats::ProxyStats;

/// What a request handler knows of its connection.
pub(crate) struct ConnContext {
    pub peer: SocketAddr,
    /// The proxy's address the connection came in on.
    pub local: Option<SocketAddr>,
    /// `peer`'s IP as an `x-forwarded-for` entry.
    pub forwarded_for: http::HeaderValue,
    /// The original destination the client dialed.
    pub vip: SocketAddr,
    /// The last table a request of this connection was served by: what a request gets
    /// once the service has left the proxy, while the connection drains.
    pub table: ArcSwap<CompiledTable>,
    pub shared: Arc<Shared>,
    pub activity: Arc<Activity>,
    /// Held by upgraded tunnels too, so the connection counts as active until they end.
    pub open: Arc<OpenConnection>,
}

impl ConnContext {
    /// What header values of a request on this connection read.
    pub(crate) fn format_context<'a>(
        &self,
        version: http::Version,
        upstream: Option<(SocketAddr, &'a str, bool)>,
        rule: &'a crate::compiled::CompiledRule,
        request: Option<&'a crate::header_value::RequestFacts>,
        started: &'a std::sync::OnceLock<std::time::SystemTime>,
    ) -> crate::header_value::Context<'a> {
        crate::header_value::Context {
            peer: self.peer,
            vip: self.vip,
            local: self.local,
            version,
            upstream,
            route_name: rule.name.as_deref(),
            request,
            started,
        }
    }
}

/// Requests in flight on a connection, and since when it has been idle.
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    started: AtomicU64,
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        RequestGuard(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since_ms.load(Relaxed))
    }
}

/// A request in flight, until its response body ends.
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Counts the connection in `connections_active` until dropped.
pub(crate) struct OpenConnection(Arc<ProxyStats>);

impl OpenConnection {
    pub(crate) fn new(stats: Arc<ProxyStats>) -> OpenConnection {
        stats.connections_active.fetch_add(1, Relaxed);
        OpenConnection(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    vip: SocketAddr,
    table: Arc<CompiledTable>,
    open: OpenConnection,
) {
    let activity = Arc::new(Activity::new());
    let ctx = Arc::new(ConnContext {
        peer,
        local: stream.local_addr().ok(),
        forwarded_for: crate::headers::forwarded_for(peer.ip()),
        vip,
        table: ArcSwap::new(table),
        shared: shared.clone(),
        activity: activity.clone(),
        open: Arc::new(open),
    });
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(forward::handle(ctx, req).await) }
    });
    let conn = shared
        .server
        .serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let options = &shared.options;
    let mut shutdown = shared.shutdown.clone();
    let mut tables = shared.tables.subscribe();
    let mut watching = true;
    let mut deadline = Instant::now() + options.header_read_timeout;
    let mut draining = false;
    loop {
        tokio::select! {
            changed = tables.changed(), if watching && !draining => {
                if changed.is_err() {
                    watching = false;
                } else if !shared.tables.contains(vip) {
                    // HTTP/1.1: closed now if idle, else after the response in flight;
                    // HTTP/2: a GOAWAY, and the streams already open finish.
                    tracing::debug!("connection from {peer} to {vip}: the service left the proxy; draining");
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                    deadline = Instant::now() + options.drain_timeout;
                }
            }
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {peer} to {vip}: {e}");
                }
                return;
            }
            _ = crate::proxy::stopped(&mut shutdown), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
                deadline = Instant::now() + options.drain_timeout;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if draining {
                    return;
                }
                let now = Instant::now();
                if activity.started.load(Relaxed) == 0 {
                    tracing::debug!("connection from {peer} to {vip}: no request within {:?}; closed", options.header_read_timeout);
                    return;
                }
                if activity.in_flight.load(Relaxed) > 0 {
                    deadline = now + options.idle_timeout;
                } else if now >= activity.idle_since() + options.idle_timeout {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                    deadline = now + options.drain_timeout;
                } else {
                    deadline = activity.idle_since() + options.idle_timeout;
                }
            }
        }
    }
}
