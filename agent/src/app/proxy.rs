//! The L7 proxy inside the agent: threads of its own (the control loop's pauses, e.g. a large
//! recompile, never stall requests), one per worker, each a single-threaded runtime with its
//! own listeners (no work stealing, no request crossing threads); bound before the kernel
//! redirects anything to it, drained on exit after the kernel stopped redirecting.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use vsteer_datapath::{OriginalDestinations, ProxyRedirect};
use vsteer_proxy::{OriginalDestination, Proxy, ProxyOptions, ProxyStats, ProxyStop, RouteTables};

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
    stop: ProxyStop,
    /// One per worker thread: its result once it has drained.
    done: Vec<oneshot::Receiver<Result<()>>>,
    pub listening: Vec<SocketAddr>,
    pub stats: Arc<ProxyStats>,
    drain: Duration,
}

impl RunningProxy {
    /// Binds the listeners (an error names them) and starts the worker threads.
    pub async fn start(
        settings: &ProxySettings,
        original: FromKernel,
        routes: RouteTables,
    ) -> Result<RunningProxy> {
        let options = ProxyOptions {
            listen: settings.listen.clone(),
            mark: Some(settings.mark),
            workers: settings.threads.max(1),
            ..ProxyOptions::default()
        };
        let drain = options.drain_timeout + DRAIN_MARGIN;
        raise_open_files_limit();
        let original: Arc<dyn OriginalDestination> = Arc::new(original);
        let proxy = Proxy::bind(options, original, routes).with_context(|| {
            format!(
                "starting the L7 proxy on {} (--proxy-addr; --no-proxy turns it off)",
                list(&settings.listen)
            )
        })?;
        let (listening, stats) = (proxy.local_addrs(), proxy.stats());
        let (workers, stop) = proxy.into_workers();
        let mut done = Vec::new();
        for (id, worker) in workers.into_iter().enumerate() {
            let (result, receiver) = oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("vsteer-proxy-{id}"))
                .spawn(move || {
                    let served = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting a proxy worker's runtime")
                        .and_then(|runtime| runtime.block_on(worker.serve()));
                    let _ = result.send(served);
                });
            if let Err(err) = spawned {
                stop.stop();
                return Err(anyhow::anyhow!(err).context(format!("starting proxy worker {id}")));
            }
            done.push(receiver);
        }
        Ok(RunningProxy {
            stop,
            done,
            listening,
            stats,
            drain,
        })
    }

    /// Stops accepting, lets in-flight requests finish for a bounded time, then ends.
    pub async fn stop(mut self) {
        self.stop.stop();
        let done = std::mem::take(&mut self.done);
        let all = async {
            for worker in done {
                match worker.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!("a proxy worker ended with an error: {err:#}"),
                    Err(_) => tracing::warn!("a proxy worker thread ended without a result"),
                }
            }
        };
        if tokio::time::timeout(self.drain, all).await.is_err() {
            tracing::warn!(
                "the proxy's requests did not finish within {:?}; closing them",
                self.drain
            );
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        // Not stopped on purpose (an error path): the workers drain on their own, bounded.
        self.stop.stop();
    }
}

/// Lifts the soft limit on open files to the hard one, as Envoy's deployments do: each proxied
/// connection holds two descriptors, and the common soft default (1,024) would stop the proxy
/// at about 500 connections while the hard limit allows far more.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(err) => {
            tracing::warn!("reading the open-files limit: {err}");
            return;
        }
    };
    if soft >= hard {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::info!("open-files limit raised from {soft} to {hard}"),
        Err(err) => tracing::warn!("raising the open-files limit from {soft} to {hard}: {err}"),
    }
}

pub fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
