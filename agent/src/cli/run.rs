//! `vsteer run`: the agent. Loads the config, fills the kernel maps, then follows config
//! changes (file events, SIGHUP) until SIGINT/SIGTERM. The datapath stays in place when the
//! agent exits; `vsteer uninstall` removes it.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use notify::Watcher;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::{SourceArgs, SourceReader};
use crate::{
    compiler::{self, Plan},
    config::Resource,
    datapath::{DEFAULT_PIN_DIR, Datapath, DatapathOptions},
    sources::{Loaded, last_good::with_last_good},
};

/// How long file events are collected before one reload (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// cgroup v2 directory whose processes are steered (default: the cgroup v2 root, i.e. the
    /// whole node).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// bpffs directory for vsteer's pinned maps and program links.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

pub fn run(args: &RunArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(agent(args))
}

/// What is in force: the resources last accepted and the plan compiled from them.
#[derive(Default)]
struct InForce {
    resources: Vec<Resource>,
    plan: Plan,
}

impl InForce {
    /// Compiles what a source read; what could not be read or compiled keeps its last good
    /// version. Returns the new state, without touching the kernel.
    fn next(&self, loaded: &Loaded) -> InForce {
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        for error in &loaded.errors {
            tracing::error!("rejected: {error}");
        }
        let resources = with_last_good(loaded, &self.resources);
        let compiled = compiler::compile(&resources, &self.plan);
        for error in &compiled.errors {
            tracing::error!("rejected: {error}");
        }
        for note in &compiled.notes {
            tracing::info!("{note}");
        }
        InForce {
            resources,
            plan: compiled.plan,
        }
    }
}

async fn agent(args: &RunArgs) -> Result<i32> {
    // Handle the signals before anything is loaded, so a signal during start-up still ends in
    // an orderly exit rather than the default instant death.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let _watcher = match &args.source.config {
        Some(dir) => Some(watch(dir, changed_tx)?),
        None => None,
    };

    let mut reader = args.source.reader();
    let started = Instant::now();
    let loaded = reader.read()?;
    let read = started.elapsed();
    let mut in_force = InForce::default().next(&loaded);
    drop(loaded);
    let compiled = started.elapsed();
    let options = DatapathOptions {
        cgroup: args.cgroup.clone(),
        pin_dir: args.pin_dir.clone(),
    };
    let mut datapath = Datapath::start(&options)?;
    let loaded_programs = started.elapsed();
    let stats = datapath
        .apply(&in_force.plan)
        .context("writing the plan into the kernel maps")?;
    let total = started.elapsed();
    tracing::info!(
        services = in_force.plan.services.len(),
        adopted = datapath.adopted(),
        written = stats.added + stats.changed + stats.removed,
        unchanged = stats.unchanged,
        read_ms = read.as_millis() as u64,
        compile_ms = (compiled - read).as_millis() as u64,
        load_ms = (loaded_programs - compiled).as_millis() as u64,
        apply_ms = (total - loaded_programs).as_millis() as u64,
        cgroup = %datapath.cgroup().display(),
        pin_dir = %args.pin_dir.display(),
        "datapath ready"
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => reload(&mut in_force, &mut reader, &mut datapath),
            Some(()) = changed.recv() => {
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
                reload(&mut in_force, &mut reader, &mut datapath);
            }
            _ = tick.tick() => datapath.sweep(),
        }
    }
    tracing::info!(
        pin_dir = %args.pin_dir.display(),
        "exiting; the datapath stays in place on the last config (`vsteer uninstall` removes it)"
    );
    Ok(0)
}

/// Applies a config change; on any failure the kernel keeps what it has. Logs how long each
/// step took (the benchmarks read these).
fn reload(in_force: &mut InForce, reader: &mut SourceReader, datapath: &mut Datapath) {
    let started = Instant::now();
    let loaded = match reader.read() {
        Ok(loaded) => loaded,
        Err(err) => {
            tracing::error!("config not reloaded, the last good one stays in force: {err:#}");
            return;
        }
    };
    let read = started.elapsed();
    let next = in_force.next(&loaded);
    let compiled = started.elapsed();
    match datapath.apply(&next.plan) {
        Ok(stats) => {
            let total = started.elapsed();
            tracing::info!(
                added = stats.added,
                changed = stats.changed,
                removed = stats.removed,
                unchanged = stats.unchanged,
                read_us = read.as_micros() as u64,
                compile_us = (compiled - read).as_micros() as u64,
                apply_us = (total - compiled).as_micros() as u64,
                "config applied"
            );
            *in_force = next;
        }
        Err(err) => {
            tracing::error!("writing the new plan failed; will retry on the next change: {err:#}")
        }
    }
}

/// Whether a file event can change the config. Opening and reading the files (which every
/// reload does) and metadata changes cannot: reacting to them would reload forever.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::{EventKind, event::ModifyKind};
    match kind {
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

/// Sends a unit on `changed` for every change in the config directory.
fn watch(
    dir: &std::path::Path,
    changed: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e.kind)) {
            let _ = changed.send(());
        }
    })
    .context("creating the config watcher")?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use notify::{
        EventKind,
        event::{AccessKind, CreateKind, DataChange, MetadataKind, ModifyKind, RenameMode},
    };

    use super::is_change;

    #[test]
    fn reading_the_config_is_no_change() {
        assert!(!is_change(&EventKind::Access(AccessKind::Any)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
    }
}
