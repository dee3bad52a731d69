//! Sending a request to one endpoint: connecting (with SO_MARK so the kernel never redirects
//! the proxy's own connections back to it, TCP_NODELAY, a connect timeout), HTTP/1.1 over a
//! pooled connection (a pooled one found closed before the request went out is retried on a
//! fresh one) or HTTP/2 over the endpoint's shared connection, and a dedicated HTTP/1.1
//! connection for protocol upgrades. A cluster's `connectionPool` limits are applied here:
//! a new connection only with a slot of the cluster's, else the request waits as pending
//! (if there is room) for one to close or go idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, anyhow};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};

use crate::limits::Slot;
use crate::pool::{EndpointPool, H1Sender, H2Sender, PooledH1, Reserved};
use crate::request_body::RequestBody;

#[derive(Debug)]
pub(crate) struct Upstream {
    pub mark: Option<u32>,
    pub connect_timeout: Duration,
    pub max_idle: usize,
    pub idle_age: Duration,
    /// The proxy's listen addresses: never a destination.
    pub own: Arc<[SocketAddr]>,
}

#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection (refused, timed out, SO_MARK denied, the proxy's own address).
    Connect(anyhow::Error),
    /// The connection failed before the response headers arrived.
    Reset(hyper::Error),
    /// No response headers within the retry policy's `perTryTimeout`.
    TryTimeout,
    /// Over a `connectionPool` limit (Envoy's circuit breaker overflow): never retried.
    Overflow,
}

/// A response, and the HTTP/1.1 connection to give back when its body is done.
pub(crate) struct Sent {
    pub response: Response<Incoming>,
    pub pooled: Option<PooledH1>,
    /// An upgrade's own connection's place in its pool and limits, held by the tunnel.
    pub place: Option<Reserved>,
}

/// Whether `addr` is one of the proxy's listen addresses (a wildcard listener owns its port
/// on every address).
pub(crate) fn is_own(own: &[SocketAddr], addr: SocketAddr) -> bool {
    own.iter().any(|o| {
        o.port() == addr.port()
            && (o.ip() == addr.ip().to_canonical()
                || o.ip() == addr.ip()
                || o.ip().is_unspecified())
    })
}

impl Upstream {
    /// The connect timeout for `pool`'s endpoint: its cluster's `connectTimeout`, else the
    /// proxy's.
    fn connect_timeout(&self, pool: &EndpointPool) -> Duration {
        pool.limits
            .as_ref()
            .and_then(|l| l.settings.connect_timeout)
            .unwrap_or(self.connect_timeout)
    }

    /// A new connection to `pool`'s endpoint (marked, bounded by its connect timeout).
    pub(crate) async fn connect(&self, pool: &EndpointPool) -> anyhow::Result<TcpStream> {
        self.connect_within(pool.addr, self.connect_timeout(pool))
            .await
    }

    async fn connect_within(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> anyhow::Result<TcpStream> {
        if is_own(&self.own, addr) {
            return Err(anyhow!(
                "endpoint {addr} is the proxy's own listen address: refusing to send a request to itself"
            ));
        }
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .with_context(|| format!("socket for endpoint {addr}"))?;
        if let Some(mark) = self.mark {
            SockRef::from(&socket).set_mark(mark).with_context(|| {
                format!("SO_MARK {mark:#x} on the socket to endpoint {addr} (needs CAP_NET_ADMIN)")
            })?;
        }
        socket
            .set_nodelay(true)
            .with_context(|| format!("TCP_NODELAY on the socket to endpoint {addr}"))?;
        match tokio::time::timeout(connect_timeout, socket.connect(addr)).await {
            Ok(stream) => stream.with_context(|| format!("connect to endpoint {addr}")),
            Err(_) => Err(anyhow!(
                "connect to endpoint {addr}: no answer within {connect_timeout:?}"
            )),
        }
    }

    /// A new connection, which holds `slot` (its count in the cluster's limits) while open.
    async fn open_h1(
        &self,
        pool: &EndpointPool,
        slot: Reserved,
    ) -> Result<H1Sender, UpstreamError> {
        let addr = pool.addr;
        let stream = self.connect(pool).await.map_err(UpstreamError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                UpstreamError::Connect(anyhow!(e).context(format!("HTTP/1.1 to endpoint {addr}")))
            })?;
        drive(conn, slot, addr, "HTTP/1.1");
        Ok(sender)
    }

    async fn open_h2(
        &self,
        pool: &EndpointPool,
        slot: Reserved,
    ) -> Result<H2Sender, UpstreamError> {
        let addr = pool.addr;
        let stream = self.connect(pool).await.map_err(UpstreamError::Connect)?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                UpstreamError::Connect(anyhow!(e).context(format!("HTTP/2 to endpoint {addr}")))
            })?;
        drive(conn, slot, addr, "HTTP/2");
        Ok(sender)
    }

    /// The endpoint's HTTP/2 connection, opened by one request while the others wait.
    async fn h2(&self, pool: &Arc<EndpointPool>) -> Result<H2Sender, UpstreamError> {
        if let Some(sender) = pool.h2() {
            return Ok(sender);
        }
        let failures = pool.h2_failures.load(Relaxed);
        let _one = pool.connecting.lock().await;
        if let Some(sender) = pool.h2() {
            return Ok(sender);
        }
        if pool.h2_failures.load(Relaxed) != failures {
            return Err(UpstreamError::Connect(anyhow!(
                "HTTP/2 to endpoint {}: the connect this request waited for failed",
                pool.addr
            )));
        }
        // A limited cluster's HTTP/2 connection needs a place too (an endpoint's first
        // always has one); without it the request overflows.
        let slot = pool.reserve().ok_or(UpstreamError::Overflow)?;
        match self.open_h2(pool, slot).await {
            Ok(sender) => {
                pool.set_h2(Some(sender.clone()));
                Ok(sender)
            }
            Err(e) => {
                pool.h2_failures.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Sends `req` to the endpoint of `pool`. When no connection could be had, the request
    /// never left and comes back with the error, to be tried on another endpoint.
    pub(crate) async fn send(
        &self,
        pool: &Arc<EndpointPool>,
        mut req: Request<RequestBody>,
    ) -> Result<Sent, (UpstreamError, Option<Request<RequestBody>>)> {
        if pool.http2 {
            let mut sender = match self.h2(pool).await {
                Ok(sender) => sender,
                Err(e) => return Err((e, Some(req))),
            };
            return match sender.try_send_request(req).await {
                Ok(response) => Ok(Sent {
                    response,
                    pooled: None,
                    place: None,
                }),
                Err(mut e) => match e.take_message() {
                    // The shared connection closed under us before the request left.
                    Some(req) => {
                        pool.set_h2(None);
                        let mut sender = match self.h2(pool).await {
                            Ok(sender) => sender,
                            Err(e) => return Err((e, Some(req))),
                        };
                        let response = sender
                            .send_request(req)
                            .await
                            .map_err(|e| (UpstreamError::Reset(e), None))?;
                        Ok(Sent {
                            response,
                            pooled: None,
                            place: None,
                        })
                    }
                    None => Err((UpstreamError::Reset(e.into_error()), None)),
                },
            };
        }
        // Held from the first time the request waits for a connection until it has one.
        let mut pending: Option<Slot> = None;
        loop {
            let (mut sender, worker, uses, reused) = match pool.checkout_h1(self.idle_age) {
                Some((sender, worker, uses)) => (sender, worker, uses, true),
                None => match pool.reserve() {
                    Some(reserved) => match self.open_h1(pool, reserved).await {
                        Ok(sender) => (sender, crate::pool::worker(), 0, false),
                        Err(e) => return Err((e, Some(req))),
                    },
                    None => {
                        // Only a limited pool has no room. Pending: wait for a connection to
                        // close or go idle, then look again; as in Envoy's pools, as long as
                        // the route's (or the try's) timeout allows.
                        let Some(limits) = &pool.limits else {
                            return Err((UpstreamError::Overflow, Some(req)));
                        };
                        if pending.is_none() {
                            match limits.pending() {
                                Some(slot) => pending = Some(slot),
                                None => return Err((UpstreamError::Overflow, Some(req))),
                            }
                        }
                        let freed = limits.freed();
                        tokio::pin!(freed);
                        freed.as_mut().enable();
                        // Enabled first: what frees from here on wakes it.
                        if !pool.worth_a_look() {
                            freed.await;
                        }
                        continue;
                    }
                },
            };
            pending = None;
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let pooled =
                        PooledH1::new(pool.clone(), sender, self.max_idle, worker, uses + 1);
                    return Ok(Sent {
                        response,
                        pooled: Some(pooled),
                        place: None,
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err((UpstreamError::Reset(e.into_error()), None)),
                },
            }
        }
    }

    /// Sends an upgrade request on a connection of its own, which becomes the tunnel: a
    /// connection of the endpoint's pool (its cluster's `maxConnections` count it; no room:
    /// 503 overflow, as a tunnel does not wait).
    pub(crate) async fn send_upgrade(
        &self,
        pool: &Arc<EndpointPool>,
        req: Request<RequestBody>,
    ) -> Result<Sent, UpstreamError> {
        let addr = pool.addr;
        let place = pool.reserve().ok_or(UpstreamError::Overflow)?;
        let stream = self.connect(pool).await.map_err(UpstreamError::Connect)?;
        let (mut sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                UpstreamError::Connect(anyhow!(e).context(format!("HTTP/1.1 to endpoint {addr}")))
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream upgrade connection to {addr}: {e}");
            }
        });
        let response = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        Ok(Sent {
            response,
            pooled: None,
            place: Some(place),
        })
    }
}

/// Drives a new upstream connection to its end on a task of its own, holding its place in
/// the pool and limits (`slot`) until then.
fn drive<E: std::fmt::Display>(
    conn: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    slot: Reserved,
    addr: SocketAddr,
    protocol: &'static str,
) {
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.await {
            tracing::debug!("upstream {protocol} connection to {addr}: {e}");
        }
    });
}
