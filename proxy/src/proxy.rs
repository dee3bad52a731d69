//! The proxy: its listeners (bound once, shared by its workers, each worker serving them on
//! its own runtime), the accept loop (each connection's original destination looked up at
//! once; a miss, a destination without a proxied table, or the proxy's own address is closed
//! and counted), and shutdown (stop accepting, drain, then close what is left).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::connection::{self, OpenConnection};
use crate::options::ProxyOptions;
use crate::original::OriginalDestination;
use crate::stats::ProxyStats;
use crate::tables::RouteTables;
use crate::upstream::{Upstream, is_own};

/// What every connection of the proxy shares.
pub(crate) struct Shared {
    pub options: ProxyOptions,
    pub tables: RouteTables,
    pub upstream: Upstream,
    pub stats: Arc<ProxyStats>,
    pub server: auto::Builder<TokioExecutor>,
    pub shutdown: watch::Receiver<bool>,
}

pub struct Proxy {
    /// Per worker, one listener per listen address.
    listeners: Vec<Vec<std::net::TcpListener>>,
    local: Vec<SocketAddr>,
    shared: Arc<Shared>,
    original: Arc<dyn OriginalDestination>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("local", &self.local).finish()
    }
}

/// One worker's share of the proxy: its own listeners, served on the runtime (one thread)
/// that runs [`ProxyWorker::serve`]; every worker shares the tables, pools and counters.
pub struct ProxyWorker {
    id: usize,
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
    original: Arc<dyn OriginalDestination>,
}

/// Tells every worker to stop accepting and drain.
#[derive(Debug)]
pub struct ProxyStop(watch::Sender<bool>);

impl ProxyStop {
    pub fn stop(&self) {
        // Receivers never all drop while a worker lives; none left means nothing to stop.
        let _ = self.0.send(true);
    }
}

/// A listening socket on `addr`, non-blocking, not yet tied to a runtime (each worker's
/// runtime registers a duplicate of it: the first worker to wake takes a connection). Not
/// SO_REUSEPORT, which would let a second agent on the same address share the port silently
/// instead of failing to start.
fn listen(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("socket for the proxy listener {addr}"))?;
    socket
        .set_reuse_address(true)
        .with_context(|| format!("SO_REUSEADDR on the proxy listener {addr}"))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .with_context(|| format!("IPV6_V6ONLY on the proxy listener {addr}"))?;
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind the proxy listener to {addr}"))?;
    socket
        .listen(1024)
        .with_context(|| format!("listen on {addr}"))?;
    socket
        .set_nonblocking(true)
        .with_context(|| format!("non-blocking proxy listener {addr}"))?;
    Ok(socket.into())
}

fn server(options: &ProxyOptions) -> auto::Builder<TokioExecutor> {
    let mut server = auto::Builder::new(TokioExecutor::new());
    server
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(options.header_read_timeout)
        // hyper answers 431 when the head outgrows its read buffer.
        .max_buf_size(options.max_header_bytes.max(8192));
    // hyper's own limit is 100; setting any value, even that one, makes it allocate its
    // header buffers per request instead of using arrays on the stack.
    if options.max_headers != 100 {
        server.http1().max_headers(options.max_headers);
    }
    server
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    server
}

impl Proxy {
    /// Binds every listen address, once, and gives each worker a duplicate of each socket.
    /// Needs no runtime: the sockets join one when served.
    pub fn bind(
        options: ProxyOptions,
        original: Arc<dyn OriginalDestination>,
        routes: RouteTables,
    ) -> anyhow::Result<Proxy> {
        anyhow::ensure!(
            !options.listen.is_empty(),
            "the proxy needs a listen address"
        );
        let workers = options.workers.max(1);
        let mut first = Vec::new();
        let mut local = Vec::new();
        for addr in &options.listen {
            let listener = listen(*addr)?;
            local.push(
                listener
                    .local_addr()
                    .with_context(|| format!("address of the proxy listener {addr}"))?,
            );
            first.push(listener);
        }
        let mut listeners = Vec::with_capacity(workers);
        for _ in 1..workers {
            let more = first
                .iter()
                .zip(&local)
                .map(|(listener, addr)| {
                    listener
                        .try_clone()
                        .with_context(|| format!("duplicating the proxy listener {addr}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            listeners.push(more);
        }
        listeners.insert(0, first);
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            upstream: Upstream {
                mark: options.mark,
                connect_timeout: options.connect_timeout,
                max_idle: options.max_idle_per_endpoint,
                idle_age: options.upstream_idle_timeout,
                own: local.clone().into(),
            },
            server: server(&options),
            options,
            tables: routes,
            stats: Arc::new(ProxyStats::default()),
            shutdown,
        });
        Ok(Proxy {
            listeners,
            local,
            shared,
            original,
            stop,
        })
    }

    /// The bound listen addresses (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local.clone()
    }

    pub fn stats(&self) -> Arc<ProxyStats> {
        self.shared.stats.clone()
    }

    /// Every worker's listeners served on the current runtime until `shutdown` completes;
    /// then stops accepting, lets in-flight requests finish for up to the drain timeout and
    /// closes the rest.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let (workers, stop) = self.into_workers();
        let mut serving = JoinSet::new();
        for worker in workers {
            serving.spawn(worker.serve());
        }
        shutdown.await;
        stop.stop();
        while let Some(done) = serving.join_next().await {
            done.context("a proxy worker failed")??;
        }
        Ok(())
    }

    /// The workers, each to be served on a runtime (a thread) of its own, and their stop.
    pub fn into_workers(self) -> (Vec<ProxyWorker>, ProxyStop) {
        let workers = self
            .listeners
            .into_iter()
            .enumerate()
            .map(|(id, listeners)| ProxyWorker {
                id,
                listeners,
                shared: self.shared.clone(),
                original: self.original.clone(),
            })
            .collect();
        (workers, ProxyStop(self.stop))
    }
}

impl ProxyWorker {
    /// Accepts and serves connections on the current runtime until the proxy is stopped,
    /// then drains them (bounded).
    pub async fn serve(self) -> anyhow::Result<()> {
        crate::pool::set_worker(self.id);
        let mut accepting = JoinSet::new();
        for listener in self.listeners {
            let addr = listener.local_addr().ok();
            let listener = TcpListener::from_std(listener).with_context(|| {
                format!("registering the proxy listener {addr:?} with the runtime")
            })?;
            accepting.spawn(accept(listener, self.shared.clone(), self.original.clone()));
        }
        while let Some(done) = accepting.join_next().await {
            done.context("a proxy accept loop failed")?;
        }
        Ok(())
    }
}

/// Resolves once shutdown is signalled (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    original: Arc<dyn OriginalDestination>,
) {
    let mut connections = JoinSet::new();
    let mut stop = shared.shutdown.clone();
    let listen = listener.local_addr().ok();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let local = stream.local_addr().ok().or(listen);
                    let Some(vip) = local.and_then(|local| original.lookup(peer, local)) else {
                        ProxyStats::add(&shared.stats.refused_no_original_destination);
                        tracing::debug!("connection from {peer}: no original destination; closed");
                        continue;
                    };
                    if is_own(&shared.upstream.own, vip) || Some(vip) == local {
                        ProxyStats::add(&shared.stats.refused_own_address);
                        tracing::debug!("connection from {peer}: original destination {vip} is the proxy itself; closed");
                        continue;
                    }
                    let Some(table) = shared.tables.get(vip) else {
                        ProxyStats::add(&shared.stats.refused_not_proxied);
                        tracing::debug!("connection from {peer}: {vip} is not a proxied service; closed");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    ProxyStats::add(&shared.stats.connections_accepted);
                    let open = OpenConnection::new(shared.stats.clone());
                    if table.tls.is_some() {
                        connections.spawn(crate::passthrough::serve(shared.clone(), stream, peer, vip, table, open));
                    } else if table.sniffed.is_some() {
                        connections.spawn(crate::passthrough::serve_sniffed(shared.clone(), stream, peer, vip, table, open));
                    } else {
                        connections.spawn(connection::serve(shared.clone(), stream, peer, vip, table, open));
                    }
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!("proxy accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = crate::proxy::stopped(&mut stop) => break,
        }
    }
    drop(listener);
    // Connections drain themselves within the drain timeout; a margin, then the rest go.
    let bound = shared.options.drain_timeout + Duration::from_secs(1);
    let _ = tokio::time::timeout(bound, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}
