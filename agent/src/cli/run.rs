//! `vsteer run`'s arguments; the agent itself is `app::run`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use vsteer_datapath::DEFAULT_PIN_DIR;

use super::SourceArgs;
use crate::app::{self, RunOptions};

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
    app::run(&RunOptions {
        config: args.source.config.clone(),
        cgroup: args.cgroup.clone(),
        pin_dir: args.pin_dir.clone(),
    })
}
