//! The L7 proxy inside the agent: its own multi-thread runtime (the control loop's pauses,
//! e.g. a large recompile, never stall requests), bound before the kernel redirects anything
//! to it, drained on exit after the kernel stopped redirecting.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use vsteer_datapath::{OriginalDestinations, ProxyRedirect};
use vsteer_proxy::{OriginalDestination, Proxy, ProxyOptions, ProxyStats, RouteTables};

/// Beyond the proxy's own drain timeout, how long the agent waits for it to end.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// What `vsteer run` is told about the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// At most one IPv4 and one IPv6 address.
    pub listen: Vec<SocketAddr>,
    /// The mark on the proxy's own sockets, so the kernel never redirects them back.
    pub mark: u32,
    pub threads: usize,
}

impl ProxySettings {
    /// The kernel's view: where to send proxied connections, and the mark to let through.
    pub fn redirect(&self, listening: &[SocketAddr]) -> ProxyRedirect {
        let mut redirect = ProxyRedirect {
            v4: None,
            v6: None,
            mark: self.mark,
        };
        for addr in listening {
            match addr {
                SocketAddr::V4(a) => redirect.v4 = Some(*a),
                SocketAddr::V6(a) => redirect.v6 = Some(*a),
            }
        }
        redirect
    }
}

/// The kernel's original-destination map, as the proxy asks it. Set once the datapath is
/// loaded: the proxy binds before, so that a port already taken fails the start before the
/// kernel programs are touched; until then (no redirect is on yet) every lookup misses.
#[derive(Clone, Default)]
pub struct FromKernel(Arc<OnceLock<OriginalDestinations>>);

impl FromKernel {
    pub fn set(&self, map: OriginalDestinations) {
        let _ = self.0.set(map);
    }
}

impl OriginalDestination for FromKernel {
    fn lookup(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
        self.0.get()?.lookup(peer, local)
    }
}

/// The running proxy.
pub struct RunningProxy {
    /// Taken on stop; dropping a runtime inside another one would block that one, so it is
    /// always shut down in the background.
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<()>>>,
    pub listening: Vec<SocketAddr>,
    pub stats: Arc<ProxyStats>,
    drain: Duration,
}

impl RunningProxy {
    /// Binds the listeners (an error names them) and starts serving. Called from the control
    /// loop's runtime: the proxy's runtime is separate, and only tasks cross between them.
    pub async fn start(
        settings: &ProxySettings,
        original: FromKernel,
        routes: RouteTables,
    ) -> Result<RunningProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads.max(1))
            .thread_name("vsteer-proxy")
            .enable_all()
            .build()
            .context("starting the proxy's runtime")?;
        let options = ProxyOptions {
            listen: settings.listen.clone(),
            mark: Some(settings.mark),
            ..ProxyOptions::default()
        };
        let drain = options.drain_timeout + DRAIN_MARGIN;
        let (bound_tx, bound) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let original: Arc<dyn OriginalDestination> = Arc::new(original);
        let served = runtime.spawn(async move {
            let proxy = Proxy::bind(options, original, routes).await?;
            let _ = bound_tx.send((proxy.local_addrs(), proxy.stats()));
            proxy
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
        });
        let (listening, stats) = match bound.await {
            Ok(bound) => bound,
            Err(_) => {
                let why = match served.await {
                    Ok(Err(err)) => err,
                    Ok(Ok(())) => anyhow::anyhow!("the proxy ended before it was bound"),
                    Err(err) => anyhow::anyhow!("the proxy task failed: {err}"),
                };
                runtime.shutdown_background();
                return Err(why.context(format!(
                    "starting the L7 proxy on {} (--proxy-addr; --no-proxy turns it off)",
                    list(&settings.listen)
                )));
            }
        };
        Ok(RunningProxy {
            runtime: Some(runtime),
            stop: Some(stop),
            served: Some(served),
            listening,
            stats,
            drain,
        })
    }

    /// Stops accepting, lets in-flight requests finish for a bounded time, then ends.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            match tokio::time::timeout(self.drain, served).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(err))) => tracing::warn!("the proxy ended with an error: {err:#}"),
                Ok(Err(err)) => tracing::warn!("the proxy task failed: {err}"),
                Err(_) => tracing::warn!(
                    "the proxy's requests did not finish within {:?}; closing them",
                    self.drain
                ),
            }
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
