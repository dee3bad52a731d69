//! `cargo xtask demo`: vsteer steering real connections, in a private network namespace and a
//! throwaway cgroup, on the embedded default config (the files of examples/).
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal::Signal, unistd::geteuid};
use serde::Deserialize;
use vsteer_testkit::{
    AgentProcess, Backend, ConnectOutcome, NetNs, PinDir, TestCgroup, connect_many,
};

use crate::{build, interrupt::Interrupt, setup};

const CONNECTS_PER_SERVICE: u32 = 1_000;
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// The part of `vsteer plan --json` the demo needs.
#[derive(Deserialize)]
struct Plan {
    services: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    vip: IpAddr,
    port: u16,
    protocol: String,
    host: String,
    backends: Vec<PlannedBackend>,
    route: Option<String>,
}

#[derive(Deserialize)]
struct PlannedBackend {
    address: IpAddr,
    port: u16,
    /// Parts per million of the service's connections.
    weight: u32,
    subsets: Vec<String>,
}

pub fn run() -> Result<()> {
    if !geteuid().is_root() {
        bail!("the demo loads eBPF programs and creates a network namespace: run it as root");
    }
    // The agent child gets the same Ctrl-C and exits on its own; the demo stops at the next
    // step and its guards remove the namespace, cgroup, pins and backends.
    let interrupt = Interrupt::install()?;
    let check = || interrupt.check();
    let vsteer = build::all(false)?;
    let plan = plan(&vsteer)?;

    let ns = NetNs::new().context("creating the demo's network namespace")?;
    let cgroup = TestCgroup::new().context("creating the demo's cgroup")?;
    println!(
        "demo: private network namespace created; client cgroup {}",
        cgroup.path().display()
    );
    let mut backends = Vec::new();
    for service in &plan.services {
        for b in &service.backends {
            let addr = SocketAddr::new(b.address, b.port);
            backends.push(Backend::tcp(&ns, addr, &addr.to_string())?);
        }
    }
    println!(
        "demo: {} backend servers listening on loopback addresses",
        backends.len()
    );
    check()?;

    let pins = PinDir::new();
    let pin_dir = pins.path();
    println!(
        "demo: starting {} run --cgroup {} --pin-dir {}",
        vsteer.display(),
        cgroup.path().display(),
        pin_dir.display()
    );
    let mut agent = AgentProcess::run(
        &vsteer,
        None,
        cgroup.path(),
        pin_dir,
        Duration::from_secs(30),
    )?;
    check()?;
    show_bpftool(pin_dir);

    for service in plan.services.iter().filter(|s| s.protocol == "TCP") {
        check()?;
        let vip = SocketAddr::new(service.vip, service.port);
        let report = connect_many(
            &ns,
            Some(&cgroup),
            vip,
            CONNECTS_PER_SERVICE,
            CLIENT_DEADLINE,
        )?;
        println!(
            "\n{} ({vip}): {CONNECTS_PER_SERVICE} connects from a process in the cgroup",
            service.host
        );
        println!(
            "  route: {}",
            service
                .route
                .as_deref()
                .unwrap_or("none (all endpoints of the ServiceEntry)")
        );
        let replies = report.replies();
        for b in &service.backends {
            let name = SocketAddr::new(b.address, b.port).to_string();
            let n = replies.get(&name).copied().unwrap_or(0);
            let share = 100.0 * n as f64 / f64::from(CONNECTS_PER_SERVICE);
            let subsets = if b.subsets.is_empty() {
                "-".to_string()
            } else {
                b.subsets.join(",")
            };
            let planned = f64::from(b.weight) / 10_000.0;
            println!(
                "  -> {name:<18} subsets {subsets:<8} {n:>5} connects  {share:5.1}%  (planned {planned:.1}%)"
            );
        }
        print_failures(&report.failures());
        let peers: BTreeMap<String, u64> =
            report.outcomes.iter().fold(BTreeMap::new(), |mut m, o| {
                if let ConnectOutcome::Reached { peer, .. } = o {
                    *m.entry(peer.to_string()).or_insert(0) += 1;
                }
                m
            });
        println!("  getpeername() seen by the client: {peers:?}");
    }

    if let Some(first) = plan.services.iter().find(|s| s.protocol == "TCP") {
        check()?;
        let vip = SocketAddr::new(first.vip, first.port);
        let outside = connect_many(&ns, None, vip, 5, CLIENT_DEADLINE)?;
        println!(
            "\nA process outside the cgroup connecting to {vip} (not steered, nothing listens on the VIP):"
        );
        print_failures(&outside.failures());
        println!("  reached: {:?}", outside.replies());
    }

    let pin_arg = pin_dir.display().to_string();
    println!("\n$ vsteer status --pin-dir {pin_arg}");
    print!(
        "{}",
        setup::output_of(Command::new(&vsteer).args(["status", "--pin-dir", &pin_arg]))?
    );
    let code = agent.stop_with(Signal::SIGTERM, Duration::from_secs(10))?;
    println!("\ndemo: agent stopped (exit code {code:?}); its datapath stays until uninstalled:");
    println!("$ vsteer uninstall --pin-dir {pin_arg}");
    println!(
        "{}",
        setup::output_of(Command::new(&vsteer).args(["uninstall", "--pin-dir", &pin_arg]))?
    );
    println!("demo: namespace, cgroup and backends removed");
    Ok(())
}

fn plan(vsteer: &Path) -> Result<Plan> {
    let json = setup::output_of(Command::new(vsteer).args(["plan", "--json"]))
        .context("vsteer plan --json on the embedded config")?;
    println!("{}", setup::output_of(Command::new(vsteer).arg("plan"))?);
    serde_json::from_str(&json).context("parsing vsteer plan --json")
}

fn print_failures(failures: &BTreeMap<i32, u64>) {
    for (errno, n) in failures {
        println!(
            "  {n} connects failed: {}",
            std::io::Error::from_raw_os_error(*errno)
        );
    }
}

/// Shows what an operator would see with bpftool, when it is installed.
fn show_bpftool(pin_dir: &Path) {
    let services = pin_dir.join("VSTEER_SERVICES");
    let commands = [
        vec![
            "prog".into(),
            "show".into(),
            "name".into(),
            "vsteer_connect4".into(),
        ],
        vec![
            "map".into(),
            "dump".into(),
            "pinned".into(),
            services.display().to_string(),
        ],
    ];
    for args in commands {
        println!("\n$ bpftool {}", args.join(" "));
        let Ok(out) = Command::new("bpftool").args(&args).output() else {
            println!("    (bpftool is not installed)");
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines().take(14) {
            println!("    {line}");
        }
    }
}
