//! The `vsteer` command line: parses arguments and calls into the app (`run`), the
//! compiler (`plan`) or the datapath (`status`, `uninstall`).

mod admin_client;
mod ejections;
mod node_pods;
mod plan;
mod proxy_counters;
mod run;
mod status;

use std::{io::IsTerminal, path::PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vsteer",
    version,
    about = "Istio traffic steering in the kernel, without sidecars"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the datapath plan (VIP:port -> backends) compiled from the config; needs no root.
    Plan(plan::PlanArgs),
    /// Load the kernel programs, attach them to a cgroup, fill the maps, follow config
    /// changes until SIGINT/SIGTERM; the datapath stays in place after exit.
    Run(Box<run::RunArgs>),
    /// Show what the kernel holds: services, backends, shares and connection counters.
    Status(status::StatusArgs),
    /// Remove the datapath: detach the programs and delete the pinned maps.
    Uninstall(status::UninstallArgs),
}

/// The node's locality, `region/zone/subzone`, as a DestinationRule's
/// `localityLbSetting.distribute` sees it.
pub fn parse_locality(text: &str) -> Result<vsteer_compiler::locality::Locality, String> {
    vsteer_compiler::locality::Locality::parse(text)
}

/// Where the Istio resources come from.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Directory of Istio YAML files (VirtualService, DestinationRule, ServiceEntry). Without
    /// it, the example config embedded in the binary is used.
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
}

/// Entry point of the `vsteer` binary; returns the process exit code.
pub fn main() -> Result<i32> {
    let cli = Cli::parse();
    init_tracing();
    crate::app::memory::use_small_pages();
    match cli.command {
        Command::Plan(args) => plan::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Status(args) => status::show(&args),
        Command::Uninstall(args) => status::remove(&args),
    }
}

/// Logs go to stderr; `RUST_LOG` (e.g. `RUST_LOG=debug`, which also shows every rewrite the
/// kernel programs log) chooses the level, info by default.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
