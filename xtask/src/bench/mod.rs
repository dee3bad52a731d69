//! `cargo xtask bench`: vsteer against what a user would pick instead (connecting straight to
//! the backend, kube-proxy-style iptables DNAT, haproxy), on the same machine, in the same run,
//! inside a network namespace of the bench's own.
mod kubernetes;
mod l7;
mod l7_workload;
mod loadgen;
mod measure;
mod peers;
pub mod plot;
pub mod report;
pub mod results;
mod scenarios;
mod system;
mod workload;

use std::{fs, path::PathBuf};

use anyhow::{Context, Result, bail};

use crate::{build, interrupt::Interrupt, paths};
use results::Results;

/// How much a run measures.
pub struct Scale {
    pub services: Vec<usize>,
    pub connects: u32,
    pub repeats: usize,
    pub stream_secs: u32,
    /// Service count of the update-cost scenario.
    pub update_services: usize,
    /// VirtualServices of the compile-and-load scenario.
    pub load_virtual_services: usize,
    /// Services (each a ServiceEntry, a VirtualService and a DestinationRule) of the memory
    /// scenario, and its one-service changes per agent.
    pub memory_services: usize,
    pub memory_reloads: usize,
    /// Seconds of load per L7 run (one variant, one load, one round).
    pub l7_secs: u32,
    /// Services at the test API server in the Kubernetes scenario, and EndpointSlice changes.
    pub kubernetes_services: usize,
    pub kubernetes_changes: usize,
}

impl Scale {
    fn new(quick: bool, smoke: bool) -> Scale {
        if smoke {
            Scale {
                services: vec![1, 100],
                connects: 300,
                repeats: 1,
                stream_secs: 1,
                update_services: 100,
                load_virtual_services: 100,
                memory_services: 300,
                memory_reloads: 10,
                l7_secs: 1,
                kubernetes_services: 300,
                kubernetes_changes: 20,
            }
        } else if quick {
            Scale {
                services: vec![1, 1_000, 10_000, 30_000],
                connects: 5_000,
                repeats: 3,
                stream_secs: 2,
                update_services: 30_000,
                load_virtual_services: 10_000,
                memory_services: 30_000,
                memory_reloads: 10,
                l7_secs: 3,
                kubernetes_services: 30_000,
                kubernetes_changes: 200,
            }
        } else {
            Scale {
                services: vec![1, 1_000, 10_000, 30_000],
                connects: 20_000,
                repeats: 5,
                stream_secs: 5,
                update_services: 30_000,
                load_virtual_services: 10_000,
                memory_services: 30_000,
                memory_reloads: 10,
                l7_secs: 5,
                kubernetes_services: 30_000,
                kubernetes_changes: 300,
            }
        }
    }
}

/// Everything a scenario needs to know about the run.
pub struct Bench {
    pub scale: Scale,
    pub vsteer: PathBuf,
    /// Where generated configs go.
    pub work: PathBuf,
    /// The client's CPU, and the one the servers (backends, haproxy) are pinned to.
    pub client_cpu: usize,
    pub server_cpu: usize,
    pub interrupt: Interrupt,
}

/// The scenarios, to pick some with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Connect,
    Update,
    Load,
    Memory,
    L7,
    Kubernetes,
}

pub fn run(quick: bool, smoke: bool, only: &[Scenario]) -> Result<()> {
    let wanted = |scenario| only.is_empty() || only.contains(&scenario);
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the bench loads eBPF programs, creates network namespaces and runs iptables: run it as root"
        );
    }
    let interrupt = Interrupt::install()?;
    crate::setup::run()?;
    let vsteer = build::all(true)?;
    peers::ensure_installed()?;
    let out_dir = paths::target().join("bench");
    let work = out_dir.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bench = Bench {
        scale: Scale::new(quick, smoke),
        vsteer,
        work: work.clone(),
        client_cpu: 0,
        server_cpu: if cores > 1 { 1 } else { 0 },
        interrupt,
    };
    let command = match (smoke, quick) {
        (true, _) => "cargo xtask bench --smoke",
        (false, true) => "cargo xtask bench --quick",
        (false, false) => "cargo xtask bench",
    };
    let mut results = Results {
        machine: system::machine(command, bench.scale.repeats),
        connect: Vec::new(),
        throughput: Vec::new(),
        update: Vec::new(),
        load: Vec::new(),
        memory: Vec::new(),
        cli: Vec::new(),
        kernel: Vec::new(),
        l7: results::L7Results::default(),
        kubernetes: Vec::new(),
        notes: Vec::new(),
    };
    if cores < 2 {
        results
            .notes
            .push("one core only: client and servers share it".into());
    }
    let largest = bench.scale.services.iter().copied().max().unwrap_or(1);
    if wanted(Scenario::Connect) {
        for &services in &bench.scale.services {
            println!("bench: connect path with {services} services");
            scenarios::connect_path(&bench, services, services == largest, &mut results)?;
        }
    }
    if wanted(Scenario::Update) {
        println!(
            "bench: one-service change with {} services",
            bench.scale.update_services
        );
        scenarios::update_cost(&bench, &mut results)?;
    }
    if wanted(Scenario::Load) {
        println!(
            "bench: compile and load {} VirtualServices",
            bench.scale.load_virtual_services
        );
        scenarios::load_cost(&bench, &mut results)?;
    }
    if wanted(Scenario::Memory) {
        println!(
            "bench: memory with {} services, {} one-service changes",
            bench.scale.memory_services, bench.scale.memory_reloads
        );
        scenarios::memory_at_scale(&bench, &mut results)?;
    }
    if wanted(Scenario::L7) {
        println!(
            "bench: L7 proxies (vsteer, nginx, haproxy), {} s per run",
            bench.scale.l7_secs
        );
        l7::l7_proxies(&bench, &mut results)?;
    }
    if wanted(Scenario::Kubernetes) {
        println!(
            "bench: Kubernetes mode with {} Services, {} EndpointSlice changes",
            bench.scale.kubernetes_services, bench.scale.kubernetes_changes
        );
        kubernetes::kubernetes_sync(&bench, &mut results)?;
    }

    let report = report::markdown(&results);
    fs::write(out_dir.join("report.md"), &report).context("writing target/bench/report.md")?;
    fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )
    .context("writing target/bench/results.json")?;
    let plots = plot::write_all(&results, &out_dir)?;
    let _ = fs::remove_dir_all(&work);
    println!("{report}");
    println!("bench: wrote {}", out_dir.join("report.md").display());
    for plot in plots {
        println!("bench: wrote {}", plot.display());
    }
    Ok(())
}
