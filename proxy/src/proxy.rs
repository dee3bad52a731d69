//! The proxy: its listeners, the accept loop (each connection's original destination looked up
//! at once; a miss, a destination without a proxied table, or the proxy's own address is
//! closed and counted), and shutdown (stop accepting, drain, then close what is left).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
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
    listeners: Vec<TcpListener>,
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

fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("socket for the proxy listener {addr}"))?;
    socket
        .set_reuseaddr(true)
        .with_context(|| format!("SO_REUSEADDR on the proxy listener {addr}"))?;
    if addr.is_ipv6() {
        socket2::SockRef::from(&socket)
            .set_only_v6(true)
            .with_context(|| format!("IPV6_V6ONLY on the proxy listener {addr}"))?;
    }
    socket
        .bind(addr)
        .with_context(|| format!("bind the proxy listener to {addr}"))?;
    socket
        .listen(1024)
        .with_context(|| format!("listen on {addr}"))
}

fn server(options: &ProxyOptions) -> auto::Builder<TokioExecutor> {
    let mut server = auto::Builder::new(TokioExecutor::new());
    server
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(options.header_read_timeout)
        // hyper answers 431 when the head outgrows its read buffer.
        .max_buf_size(options.max_header_bytes.max(8192))
        .max_headers(options.max_headers);
    server
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    server
}

impl Proxy {
    pub async fn bind(
        options: ProxyOptions,
        original: Arc<dyn OriginalDestination>,
        routes: RouteTables,
    ) -> anyhow::Result<Proxy> {
        anyhow::ensure!(
            !options.listen.is_empty(),
            "the proxy needs a listen address"
        );
        let mut listeners = Vec::new();
        let mut local = Vec::new();
        for addr in &options.listen {
            let listener = listen(*addr)?;
            local.push(
                listener
                    .local_addr()
                    .with_context(|| format!("address of the proxy listener {addr}"))?,
            );
            listeners.push(listener);
        }
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

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests
    /// finish for up to the drain timeout and closes the rest.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut accepting = JoinSet::new();
        for listener in self.listeners {
            accepting.spawn(accept(listener, self.shared.clone(), self.original.clone()));
        }
        shutdown.await;
        // Receivers never all drop while `shared` lives, so this cannot fail.
        let _ = self.stop.send(true);
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
                    if !shared.tables.contains(vip) {
                        ProxyStats::add(&shared.stats.refused_not_proxied);
                        tracing::debug!("connection from {peer}: {vip} is not a proxied service; closed");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    ProxyStats::add(&shared.stats.connections_accepted);
                    let open = OpenConnection::new(shared.stats.clone());
                    connections.spawn(connection::serve(shared.clone(), stream, peer, vip, open));
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
