//! `vsteer status` and `vsteer uninstall`: the pinned datapath, with or without an agent.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vsteer_datapath::{DEFAULT_PIN_DIR, status, uninstall};

#[derive(Args)]
pub struct PinDirArgs {
    /// bpffs directory of vsteer's pinned maps and program links.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

pub fn show(args: &PinDirArgs) -> Result<i32> {
    print!("{}", status::render(&status::read(&args.pin_dir)?));
    Ok(0)
}

pub fn remove(args: &PinDirArgs) -> Result<i32> {
    let removed = uninstall(&args.pin_dir)?;
    if removed.is_empty() {
        println!("nothing of vsteer's under {}", args.pin_dir.display());
    }
    for path in removed {
        println!("removed {}", path.display());
    }
    Ok(0)
}
