//! `vsteer status` and `vsteer uninstall`: the pinned datapath, with or without an agent
//! (`uninstall` also removes the agent's last good snapshot of that datapath).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vsteer_datapath::{DEFAULT_PIN_DIR, status, uninstall};

use crate::sources::snapshot::{self, DEFAULT_STATE_DIR};

#[derive(Args)]
pub struct PinDirArgs {
    /// bpffs directory of vsteer's pinned maps and program links.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Where `vsteer run` kept the last good copy of each config file (`uninstall` removes
    /// the one of this pin directory).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

pub fn show(args: &PinDirArgs) -> Result<i32> {
    print!("{}", status::render(&status::read(&args.pin_dir)?));
    Ok(0)
}

pub fn remove(args: &PinDirArgs) -> Result<i32> {
    let mut removed = uninstall(&args.pin_dir)?;
    let snapshot = snapshot::location(&args.state_dir, &args.pin_dir);
    if snapshot.is_dir() {
        std::fs::remove_dir_all(&snapshot)
            .with_context(|| format!("removing {}", snapshot.display()))?;
        removed.push(snapshot);
    }
    if removed.is_empty() {
        println!("nothing of vsteer's under {}", args.pin_dir.display());
    }
    for path in removed {
        println!("removed {}", path.display());
    }
    Ok(0)
}
