//! `vsteer run`: the agent.
use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::SourceArgs;
use crate::{
    compiler,
    datapath::{DEFAULT_PIN_DIR, Datapath, DatapathOptions},
};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// cgroup v2 directory whose processes are steered (default: the cgroup v2 root, i.e. the
    /// whole node).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// bpffs directory for vsteer's pinned maps.
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

async fn agent(args: &RunArgs) -> Result<i32> {
    // Handle the signals before anything is loaded, so a signal during start-up still ends in
    // a clean shutdown rather than the default instant death.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let loaded = args.source.load()?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let compiled = compiler::compile(&loaded.resources);
    for error in loaded.errors.iter().chain(&compiled.errors) {
        tracing::error!("rejected: {error}");
    }
    for note in &compiled.notes {
        tracing::info!("{note}");
    }
    let options = DatapathOptions {
        cgroup: args.cgroup.clone(),
        pin_dir: args.pin_dir.clone(),
    };
    let mut datapath = Datapath::start(&options)?;
    let stats = datapath
        .apply(&compiled.plan)
        .context("writing the plan into the kernel maps")?;
    tracing::info!(
        services = compiled.plan.services.len(),
        written = stats.added + stats.changed,
        cgroup = %datapath.cgroup().display(),
        pin_dir = %args.pin_dir.display(),
        "datapath ready"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = tick.tick() => {
                if let Err(err) = datapath.sweep() {
                    tracing::warn!("freeing replaced backend tables: {err:#}");
                }
            }
        }
    }
    tracing::info!("shutting down: detaching programs and removing pins");
    datapath.shutdown();
    Ok(0)
}
