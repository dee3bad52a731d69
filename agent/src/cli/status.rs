//! `vsteer status` and `vsteer uninstall`: the pinned datapath, with or without an agent
//! (`uninstall` also removes the agent's last good snapshot of that datapath).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vsteer_datapath::{Claim, DEFAULT_PIN_DIR, PinDirOwner, status, uninstall};

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

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pins: PinDirArgs,
    /// The running agent's admin address, whose `/metrics` has the proxy's counters and, in
    /// Kubernetes mode, `/node/pods` the node's pods (`off`: the kernel maps only).
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:15020")]
    admin_addr: String,
}

pub fn show(args: &StatusArgs) -> Result<i32> {
    print!("{}", status::render(&status::read(&args.pins.pin_dir)?));
    if args.admin_addr != "off" {
        let admin: std::net::SocketAddr = args
            .admin_addr
            .parse()
            .with_context(|| format!("--admin-addr {:?} is not an address", args.admin_addr))?;
        print!(
            "{}",
            super::proxy_counters::render(admin, super::proxy_counters::read(admin))
        );
        print!("{}", super::ejections::section(admin));
        print!("{}", super::node_pods::section(admin));
    }
    Ok(0)
}

#[derive(Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pins: PinDirArgs,
    /// Remove the datapath even while an agent owns the pin directory (steering stops at
    /// once, and that agent keeps running without it).
    #[arg(long)]
    force: bool,
}

pub fn remove(args: &UninstallArgs) -> Result<i32> {
    let UninstallArgs { pins: args, force } = args;
    // Held while removing: no agent starts on a half-removed directory.
    let _owner = match PinDirOwner::claim_existing(&args.pin_dir)? {
        Some(Claim::Busy { holder }) if !force => {
            let holder = vsteer_datapath::holder_name(holder);
            anyhow::bail!(
                "{} is owned by {holder}, which is running: stop it first (its datapath stays in \
                 place when it exits), or pass --force to pull the datapath from under it",
                args.pin_dir.display()
            );
        }
        Some(Claim::Owned(owner)) => Some(owner),
        _ => None,
    };
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
