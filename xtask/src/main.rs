//! `cargo xtask <command>`: the one entry point for setting up, building, testing and demoing
//! vsteer on a fresh machine.

mod bench;
mod build;
mod demo;
mod fuzz;
mod interrupt;
mod lint;
mod paths;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test and demo vsteer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build needs and is missing (nightly rust-src, bpf-linker).
    Setup,
    /// Build the eBPF programs (nightly) and the agent (stable) with the programs embedded.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up, then run every test of the workspace, kernel tests included (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// cargo fmt --check and cargo clippy -D warnings, on the workspace and the eBPF crate.
    Lint,
    /// Build, then steer connections in a private network namespace and cgroup (needs root).
    Demo,
    /// Measure vsteer against direct connections, iptables DNAT, haproxy and nginx (needs root);
    /// writes target/bench/report.md and SVG plots.
    Bench {
        /// A shorter run (fewer connections and repetitions), under 10 minutes on 2 cores.
        #[arg(long)]
        quick: bool,
        /// A tiny run that only checks every scenario works (CI's smoke test).
        #[arg(long)]
        smoke: bool,
        /// Run only these scenarios (comma-separated: connect, update, load, memory, l7); the
        /// report then covers only them.
        #[arg(long, value_delimiter = ',', value_name = "SCENARIOS")]
        only: Vec<bench::Scenario>,
    },
    /// Run the fuzz targets of fuzz/ (cargo-fuzz, nightly), each for a bounded time, from a
    /// corpus seeded with the examples; a crash fails and names its input.
    Fuzz {
        /// Minutes per target (fractions allowed: CI runs 0.5).
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Run only these targets (comma-separated: parse, compile, tables).
        #[arg(long, value_delimiter = ',', value_name = "TARGETS")]
        only: Vec<String>,
    },
}

fn main() {
    if let Err(err) = dispatch(Cli::parse().command) {
        eprintln!("cargo xtask: {err:#}");
        std::process::exit(1);
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Setup => setup::run(),
        Command::Build { release } => build::all(release).map(|_| ()),
        Command::Test { args } => test::run(&args),
        Command::Lint => lint::run(),
        Command::Demo => demo::run(),
        Command::Bench { quick, smoke, only } => bench::run(quick, smoke, &only),
        Command::Fuzz { minutes, only } => fuzz::run(minutes, &only),
    }
}
