//! The scenarios: each builds its own namespace, cgroup, backends and peers, measures, and
//! removes everything (guards, also on errors).
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use vsteer_testkit::{
    AgentProcess, Backend, NetNs, PinDir, Probe, TestCgroup, probe_cycle_on, stream_bytes,
};

use super::{
    Bench, measure, peers,
    results::{ConnectRun, KernelCost, LoadCost, Results, Stat, Throughput, UpdateCost, Variant},
    system, workload,
};

const CLIENT_DEADLINE: Duration = Duration::from_secs(600);
const AGENT_READY: Duration = Duration::from_secs(300);

/// A namespace with the measured service's backends listening, and a client cgroup.
struct Stage {
    _backends: Vec<Backend>,
    cgroup: TestCgroup,
    ns: NetNs,
}

impl Stage {
    fn new(bench: &Bench) -> Result<Stage> {
        let ns = NetNs::new()?;
        // Short connections cycle through client ports quickly: give them the whole range.
        ns.run(|| std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535"))?
            .context("widening the namespace's port range")?;
        let mut backends = Vec::new();
        for b in workload::BACKENDS {
            let addr = SocketAddr::new(IpAddr::V4(b), workload::BACKEND_PORT);
            backends.push(Backend::tcp_on(
                &ns,
                addr,
                &addr.to_string(),
                bench.server_cpu,
            )?);
        }
        Ok(Stage {
            _backends: backends,
            cgroup: TestCgroup::new()?,
            ns,
        })
    }

    /// Short connections to `targets` in turn from a client pinned to its CPU, in the cgroup.
    fn short(&self, bench: &Bench, targets: &[SocketAddr]) -> Result<measure::RunNumbers> {
        bench.interrupt.check()?;
        let report = probe_cycle_on(
            &self.ns,
            Some(&self.cgroup),
            targets,
            Probe::Tcp,
            bench.scale.connects,
            CLIENT_DEADLINE,
            Some(bench.client_cpu),
        )?;
        measure::short_connections(&report)
    }

    fn repeat(&self, bench: &Bench, targets: &[SocketAddr]) -> Result<(Stat, Stat, Stat)> {
        // One pass not counted: caches, CPU frequency and the backends' first accepts settle
        // before the first measured run, for every variant alike.
        self.short(bench, targets)?;
        let mut rate = Vec::new();
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for _ in 0..bench.scale.repeats {
            let n = self.short(bench, targets)?;
            rate.push(n.conns_per_sec);
            p50.push(n.p50_us);
            p99.push(n.p99_us);
        }
        Ok((Stat::of(&rate), Stat::of(&p50), Stat::of(&p99)))
    }

    /// `vsteer run` on `config`, attached to the stage's cgroup; stopped and uninstalled by
    /// the returned guard.
    fn agent(&self, bench: &Bench, config: &Path) -> Result<Agent> {
        let pins = PinDir::new();
        let started = Instant::now();
        let process = AgentProcess::run(
            &bench.vsteer,
            Some(config),
            self.cgroup.path(),
            pins.path(),
            AGENT_READY,
        )?;
        Ok(Agent {
            ready_after: started.elapsed(),
            process,
            pins,
        })
    }
}

/// A running agent; dropping it stops the process (by pid) and removes its pins, which
/// detaches its programs.
struct Agent {
    ready_after: Duration,
    process: AgentProcess,
    pins: PinDir,
}

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(workload::VIP), workload::PORT)
}

fn push(results: &mut Results, services: usize, variant: Variant, stats: (Stat, Stat, Stat)) {
    results.connect.push(ConnectRun {
        services,
        variant,
        conns_per_sec: stats.0,
        p50_us: stats.1,
        p99_us: stats.2,
    });
}

/// Scenario 1 (and 2 and 4 where they belong): short connections with `services` services
/// configured, for every variant.
pub fn connect_path(
    bench: &Bench,
    services: usize,
    largest: bool,
    results: &mut Results,
) -> Result<()> {
    let stage = Stage::new(bench)?;
    // Direct: the client itself takes the 4 backends in turn, so the servers do the same work
    // as behind a VIP.
    let direct: Vec<SocketAddr> = workload::BACKENDS
        .iter()
        .map(|b| SocketAddr::new(IpAddr::V4(*b), workload::BACKEND_PORT))
        .collect();
    push(
        results,
        services,
        Variant::Direct,
        stage.repeat(bench, &direct)?,
    );

    // vsteer: the agent on a config of `services` services, the measured one a weighted
    // 40/30/20/10 canary over its 4 backends.
    let config = bench.work.join(format!("vsteer-{services}"));
    workload::write_vsteer_config(&config, services, false)?;
    {
        let agent = stage.agent(bench, &config)?;
        push(
            results,
            services,
            Variant::Vsteer,
            stage.repeat(bench, &[vip()])?,
        );
        // The kernel's own statistics cost a little per call: a separate pass.
        let program = agent.pins.path().join("programs/vsteer_connect4");
        let stats = system::BpfStats::enable()?;
        let before = system::program_stats(&program)?;
        stage.short(bench, &[vip()])?;
        let after = system::program_stats(&program)?;
        drop(stats);
        let calls = after.0.saturating_sub(before.0);
        let time = after.1.saturating_sub(before.1);
        results.kernel.push(KernelCost {
            program: if largest {
                "vsteer_connect4".to_string()
            } else {
                format!("vsteer_connect4 ({services} services)")
            },
            calls,
            ns_per_call: if calls == 0 {
                f64::NAN
            } else {
                time as f64 / calls as f64
            },
        });
        if services == 1 {
            throughput(bench, &stage, results)?;
        }
        drop(agent);
    }
    std::fs::remove_dir_all(&config).ok();

    // iptables: the same services as kube-proxy would write them.
    bench.interrupt.check()?;
    peers::iptables_restore(&stage.ns, &workload::iptables_ruleset(services))?;
    let measured = stage.repeat(bench, &[vip()]);
    peers::iptables_flush(&stage.ns)?;
    push(results, services, Variant::Iptables, measured?);

    // haproxy: one frontend; a proxy's cost does not depend on how many other services it has.
    if services == 1 {
        let cfg = bench.work.join("haproxy.cfg");
        std::fs::write(&cfg, workload::haproxy_config()).context("writing haproxy.cfg")?;
        let _haproxy = peers::Haproxy::start(&stage.ns, &cfg, bench.server_cpu)?;
        push(
            results,
            services,
            Variant::Haproxy,
            stage.repeat(bench, &[vip()])?,
        );
    }
    Ok(())
}

/// Scenario 2: one long connection, direct and through vsteer (the agent is running).
fn throughput(bench: &Bench, stage: &Stage, results: &mut Results) -> Result<()> {
    let backend = SocketAddr::new(
        IpAddr::V4(workload::STREAM_BACKEND),
        workload::STREAM_BACKEND_PORT,
    );
    let _stream = Backend::stream_on(&stage.ns, backend, bench.server_cpu)?;
    let vip = SocketAddr::new(IpAddr::V4(workload::STREAM_VIP), workload::STREAM_PORT);
    for (variant, target) in [(Variant::Direct, backend), (Variant::Vsteer, vip)] {
        let mut samples = Vec::new();
        for _ in 0..bench.scale.repeats {
            bench.interrupt.check()?;
            let secs = bench.scale.stream_secs;
            let rate = stream_bytes(
                &stage.ns,
                Some(&stage.cgroup),
                target,
                secs,
                Some(bench.client_cpu),
            )?
            .with_context(|| format!("streaming from {target}: connect failed"))?;
            samples.push(rate);
        }
        results.throughput.push(Throughput {
            variant,
            bytes_per_sec: Stat::of(&samples),
        });
    }
    Ok(())
}

/// Scenario 3a: a one-service weight change with many services configured: vsteer's
/// reload (read, compile, diffed map write) against kube-proxy's `iptables-restore`.
pub fn update_cost(bench: &Bench, results: &mut Results) -> Result<()> {
    let services = bench.scale.update_services;
    let stage = Stage::new(bench)?;
    let config = bench.work.join(format!("update-{services}"));
    workload::write_vsteer_config(&config, services, false)?;
    let mut apply = Vec::new();
    let mut reload = Vec::new();
    {
        let mut agent = stage.agent(bench, &config)?;
        for r in 0..bench.scale.repeats {
            bench.interrupt.check()?;
            agent.process.drain();
            workload::write_measured(&config, r + 1)?;
            let line = agent.process.wait_for("config applied", AGENT_READY)?;
            let field = |name: &str| -> f64 {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            apply.push(field("apply_us") / 1_000.0);
            reload.push((field("read_us") + field("compile_us") + field("apply_us")) / 1_000.0);
        }
    }
    std::fs::remove_dir_all(&config).ok();
    let ruleset = workload::iptables_ruleset(services);
    let mut restore = Vec::new();
    for _ in 0..bench.scale.repeats {
        bench.interrupt.check()?;
        restore.push(peers::iptables_restore(&stage.ns, &ruleset)?.as_secs_f64() * 1_000.0);
    }
    peers::iptables_flush(&stage.ns)?;
    results.update.push(UpdateCost {
        services,
        vsteer_apply_ms: Stat::of(&apply),
        vsteer_reload_ms: Stat::of(&reload),
        iptables_restore_ms: Stat::of(&restore),
    });
    results.notes.push(format!(
        "one-service change: vsteer's reload is the agent's own timing of reading the changed file, \
         compiling all {services} services and writing the diff; the agent also waits {} ms after a file \
         event for the write to settle, which is not counted",
        200
    ));
    Ok(())
}

/// Scenario 3b: compiling and loading N VirtualServices (each with its ServiceEntry and
/// DestinationRule) from YAML: the agent's start to its datapath ready, and its peak RSS.
pub fn load_cost(bench: &Bench, results: &mut Results) -> Result<()> {
    let count = bench.scale.load_virtual_services;
    let stage = Stage::new(bench)?;
    let config = bench.work.join(format!("load-{count}"));
    workload::write_vsteer_config(&config, count, true)?;
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..bench.scale.repeats {
        bench.interrupt.check()?;
        let agent = stage.agent(bench, &config)?;
        times.push(agent.ready_after.as_secs_f64() * 1_000.0);
        peak = peak.max(peak_rss_kib(agent.process.pid()).unwrap_or(0));
    }
    std::fs::remove_dir_all(&config).ok();
    results.load.push(LoadCost {
        virtual_services: count,
        load_ms: Stat::of(&times),
        peak_rss_kib: peak,
    });
    Ok(())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
