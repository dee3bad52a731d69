//! `vsteer run`: load the config, start the L7 proxy, fill the kernel maps and the proxy's
//! route tables, then follow config changes (file events, SIGHUP) until SIGINT/SIGTERM. The
//! datapath stays in place when the agent exits, with proxied services back on the kernel
//! path (no proxy runs then); `vsteer uninstall` removes it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use vsteer_datapath::{Datapath, DatapathOptions};
use vsteer_proxy::RouteTables;

use super::admin;
use super::agent::{Agent, Applied, PassError};
use super::node::Node;
use super::proxy::{FromKernel, ProxySettings, RunningProxy, list};
use crate::sources::{Source, watch};

/// Everything `vsteer run` is told.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config directory; `None`: the examples built in.
    pub config: Option<PathBuf>,
    /// The cgroup v2 directory whose processes are steered; `None`: the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    pub pin_dir: PathBuf,
    /// `None`: no proxy; services that need one stay on the kernel path.
    pub proxy: Option<ProxySettings>,
    /// Where `/metrics` is served; `None`: nowhere.
    pub admin: Option<SocketAddr>,
    /// How long a config file must be left alone before it is read.
    pub settle: Duration,
}

pub fn run(options: &RunOptions) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(agent(options))
}

async fn agent(options: &RunOptions) -> Result<i32> {
    // Handle the signals before anything is loaded, so a signal during start-up still ends in
    // an orderly exit rather than the default instant death.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let source = Source::with_settle(options.config.clone(), options.settle);
    let watch = match source.dir() {
        Some(dir) => Some(watch::watch(dir, options.settle, changed_tx)?),
        None => None,
    };

    // Everything that can fail for reasons of the node (a port taken by another process, an
    // old agent still running) fails here, before the kernel programs are touched: the proxy
    // and admin listeners bind first.
    let routes = options.proxy.as_ref().map(|_| RouteTables::new());
    let original = FromKernel::default();
    let proxy = match (&options.proxy, &routes) {
        (Some(settings), Some(routes)) => {
            Some(RunningProxy::start(settings, original.clone(), routes.clone()).await?)
        }
        _ => None,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    if let Some(proxy) = &proxy {
        vsteer_proxy::register_metrics(&mut registry, proxy.stats.clone());
    }
    let admin = match options.admin {
        Some(addr) => Some(admin::serve(addr, registry).await?),
        None => None,
    };

    let started = Instant::now();
    // Redirecting starts only once the proxy listens and holds its tables (below).
    let datapath = Datapath::start(&DatapathOptions {
        cgroup: options.cgroup.clone(),
        pin_dir: options.pin_dir.clone(),
        proxy: None,
    })?;
    let loaded_programs = started.elapsed();
    let adopted = datapath.adopted();
    original.set(datapath.original_destinations()?);
    let mut agent = Agent::new(source, Node { datapath, routes });
    let applied = agent.start()?;
    // The last fallible step of the start: from here on the kernel sends proxied services
    // to the proxy, and only an orderly exit (below) turns that off again.
    if let (Some(settings), Some(proxy)) = (&options.proxy, &proxy) {
        agent
            .sink_mut()
            .datapath
            .set_proxy(Some(&settings.redirect(&proxy.listening)))?;
    }
    let proxied = agent
        .plan()
        .services()
        .filter(|s| matches!(s.decision, vsteer_plan::Decision::Proxy { .. }))
        .count();
    tracing::info!(
        services = agent.plan().len(),
        proxied,
        adopted,
        written = applied.stats.added + applied.stats.changed + applied.stats.removed,
        unchanged = applied.stats.unchanged,
        load_ms = loaded_programs.as_millis() as u64,
        read_ms = applied.read.as_millis() as u64,
        compile_ms = applied.compile.as_millis() as u64,
        apply_ms = applied.apply.as_millis() as u64,
        cgroup = %agent.sink().datapath.cgroup().display(),
        pin_dir = %options.pin_dir.display(),
        proxy = %proxy.as_ref().map_or_else(|| "off".to_string(), |p| list(&p.listening)),
        admin = %admin.as_ref().map_or_else(|| "off".to_string(), |(a, _)| a.to_string()),
        "datapath ready"
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                // What the operator sees at the path is what is followed from now on.
                if let Some(watch) = &watch {
                    watch.follow();
                }
                let delivered = Instant::now();
                let result = agent.reload(None);
                log(result, Duration::ZERO, delivered);
            }
            Some(batch) = changed.recv() => {
                let delivered = Instant::now();
                let mut paths = batch.paths;
                let mut first = batch.first_event;
                // Batches that arrived meanwhile are read in the same pass.
                while let Ok(more) = changed.try_recv() {
                    if paths.is_empty() || more.paths.is_empty() {
                        paths.clear();
                    } else {
                        paths.extend(more.paths);
                    }
                    first = first.min(more.first_event);
                }
                let settle = delivered.saturating_duration_since(first);
                let result = agent.reload(Some(&paths));
                log(result, settle, delivered);
            }
            _ = tick.tick() => agent.sweep(),
        }
    }
    if let Some(proxy) = proxy {
        // The kernel first, so that no new connection is sent to a proxy that is going away.
        if let Err(err) = agent.sink_mut().datapath.set_proxy(None) {
            tracing::error!("proxied services could not be put back on the kernel path: {err:#}");
        }
        proxy.stop().await;
    }
    if let Some((_, task)) = admin {
        task.abort();
    }
    tracing::info!(
        pin_dir = %options.pin_dir.display(),
        "exiting; the datapath stays in place on the last config (`vsteer uninstall` removes it)"
    );
    Ok(0)
}

/// Logs a reload and how long each step took (the benchmarks read these): `settle_ms` is
/// the wait for files to be quiet, `total_us` everything from the settled event to the maps
/// written.
fn log(result: Result<Applied, PassError>, settle: Duration, delivered: Instant) {
    match result {
        Ok(applied) => tracing::info!(
            added = applied.stats.added,
            changed = applied.stats.changed,
            removed = applied.stats.removed,
            unchanged = applied.stats.unchanged,
            resources = applied.resources,
            recompiled = applied.recompiled,
            settle_ms = settle.as_millis() as u64,
            read_us = applied.read.as_micros() as u64,
            compile_us = applied.compile.as_micros() as u64,
            apply_us = applied.apply.as_micros() as u64,
            total_us = delivered.elapsed().as_micros() as u64,
            "config applied"
        ),
        Err(err) => tracing::error!("{err}"),
    }
}
