//! The scenarios: each builds its own namespaces, cgroups, backends and peers, measures, and
//! removes everything (guards, also on errors).
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use vsteer_testkit::{
    AgentProcess, Backend, NetNs, PinDir, Probe, TestCgroup, probe_cycle_on, stream_bytes,
};

use super::{
    Bench, measure, peers,
    results::{
        CliAtScale, ConnectRun, KernelCost, LoadCost, MemoryAtScale, MemorySample, Results,
        RoundSample, Stat, Throughput, UpdateCost, Variant, per_round_ratio,
    },
    system::{self, Measured},
    workload,
};

const CLIENT_DEADLINE: Duration = Duration::from_secs(600);
const AGENT_READY: Duration = Duration::from_secs(300);
/// The agent's log line for every applied config change.
const APPLIED: &str = "config applied";

/// A namespace with the measured service's backends listening.
struct Stage {
    _backends: Vec<Backend>,
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
            ns,
        })
    }
}

/// Short connections to `targets` in turn from a client pinned to its CPU, inside `ns` and
/// `cgroup`.
pub(super) fn short(
    bench: &Bench,
    ns: &NetNs,
    cgroup: &TestCgroup,
    targets: &[SocketAddr],
) -> Result<RoundSample> {
    bench.interrupt.check()?;
    let report = probe_cycle_on(
        ns,
        Some(cgroup),
        targets,
        Probe::Tcp,
        bench.scale.connects,
        CLIENT_DEADLINE,
        Some(bench.client_cpu),
    )?;
    let n = measure::short_connections(&report)?;
    Ok(RoundSample {
        conns_per_sec: n.conns_per_sec,
        p50_us: n.p50_us,
        p99_us: n.p99_us,
    })
}

/// `vsteer run` on `config`, attached to `cgroup`; stopped and uninstalled by the returned
/// guard.
fn agent(bench: &Bench, cgroup: &TestCgroup, config: &Path) -> Result<Agent> {
    let pins = PinDir::new();
    let started = Instant::now();
    let process = AgentProcess::run(
        &bench.vsteer,
        Some(config),
        cgroup.path(),
        pins.path(),
        AGENT_READY,
    )?;
    Ok(Agent {
        ready_after: started.elapsed(),
        process,
        pins,
    })
}

/// A running agent; dropping it stops the process (by pid) and removes its pins, which
/// detaches its programs.
struct Agent {
    ready_after: Duration,
    process: AgentProcess,
    pins: PinDir,
}

impl Agent {
    /// Rewrites the measured service with weight set `variant` and waits for the agent to
    /// apply it; returns the agent's line.
    fn change(&mut self, config: &Path, variant: usize) -> Result<String> {
        // Only a line logged after this write counts.
        self.process.drain();
        workload::write_measured(config, variant)?;
        self.process.wait_for(APPLIED, AGENT_READY)
    }
}

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(workload::VIP), workload::PORT)
}

fn range_address() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(workload::RANGE_ADDRESS), workload::PORT)
}

/// How one variant's client reaches the measured service.
struct Way<'a> {
    variant: Variant,
    ns: &'a NetNs,
    cgroup: &'a TestCgroup,
    targets: Vec<SocketAddr>,
}

/// Scenario 1 (and 2 and 4 where they belong): short connections with `services` services
/// configured, for every variant, round by round: every variant is set up first, then each
/// round runs each of them once.
pub fn connect_path(
    bench: &Bench,
    services: usize,
    largest: bool,
    results: &mut Results,
) -> Result<()> {
    // vsteer's programs are attached to `steered` only. The other variants' clients run in
    // `plain`, a sibling cgroup without programs: the same place in the hierarchy (the same
    // CPU share against other jobs on the machine), and not even a map miss of the hook.
    let steered = TestCgroup::new()?;
    let plain = TestCgroup::new()?;
    let stage = Stage::new(bench)?;
    // iptables DNAT steers the same VIP as vsteer, so it gets a namespace of its own, with its
    // own backends on the same addresses, loaded once (untimed), rather than a ruleset
    // restored and flushed around each of its runs: once a namespace has a nat table its
    // netfilter NAT and conntrack hooks stay registered, flushed or not, and every later
    // direct and vsteer run there would pay conntrack; and at 30,000 services one
    // iptables-restore takes seconds, every round.
    let nat = Stage::new(bench)?;
    bench.interrupt.check()?;
    peers::iptables_restore(&nat.ns, &workload::iptables_ruleset(services))?;

    // vsteer: the agent on a config of `services` services, the measured one a weighted
    // 40/30/20/10 canary over its 4 backends. It only steers the VIP, and only in `steered`.
    let config = bench.work.join(format!("vsteer-{services}"));
    workload::write_vsteer_config(&config, services, false)?;
    let agent = agent(bench, &steered, &config)?;

    // haproxy: one frontend; a proxy's cost does not depend on how many other services it
    // has. Its VIP is its own, so it can stay up next to vsteer's.
    let haproxy = if services == 1 {
        let cfg = bench.work.join("haproxy.cfg");
        std::fs::write(&cfg, workload::haproxy_config()).context("writing haproxy.cfg")?;
        let frontend = SocketAddr::new(IpAddr::V4(workload::HAPROXY_VIP), workload::PORT);
        Some(peers::haproxy(
            &stage.ns,
            &cfg,
            bench.server_cpu,
            &[frontend],
        )?)
    } else {
        None
    };

    // Direct: the client itself takes the 4 backends in turn, so the servers do the same work
    // as behind a VIP. First: the others' ratios are taken to it.
    let direct: Vec<SocketAddr> = workload::BACKENDS
        .iter()
        .map(|b| SocketAddr::new(IpAddr::V4(*b), workload::BACKEND_PORT))
        .collect();
    let mut ways = vec![
        Way {
            variant: Variant::Direct,
            ns: &stage.ns,
            cgroup: &plain,
            targets: direct,
        },
        Way {
            variant: Variant::Vsteer,
            ns: &stage.ns,
            cgroup: &steered,
            targets: vec![vip()],
        },
        Way {
            variant: Variant::Iptables,
            ns: &nat.ns,
            cgroup: &plain,
            targets: vec![vip()],
        },
    ];
    // At the largest table: a range's connects (exact miss, then the trie) and connects to
    // no service (both miss), from the steered cgroup, against the exact VIP's.
    if largest {
        ways.push(Way {
            variant: Variant::VsteerRange,
            ns: &stage.ns,
            cgroup: &steered,
            targets: vec![range_address()],
        });
        ways.push(Way {
            variant: Variant::VsteerMiss,
            ns: &stage.ns,
            cgroup: &steered,
            targets: ways[0].targets.clone(),
        });
    }
    if haproxy.is_some() {
        ways.push(Way {
            variant: Variant::Haproxy,
            ns: &stage.ns,
            cgroup: &plain,
            targets: vec![SocketAddr::new(
                IpAddr::V4(workload::HAPROXY_VIP),
                workload::PORT,
            )],
        });
    }
    let samples = measure::rounds(ways.len(), bench.scale.repeats, |k| {
        let way = &ways[k];
        short(bench, way.ns, way.cgroup, &way.targets)
            .with_context(|| format!("{} with {services} services", way.variant.label()))
    })?;
    let direct = samples.first().cloned().unwrap_or_default();
    for (way, rounds) in ways.iter().zip(samples) {
        results.connect.push(ConnectRun::from_rounds(
            services,
            way.variant,
            rounds,
            &direct,
        ));
    }

    // The kernel's own statistics cost a little per call: a separate pass, not a round.
    let program = agent.pins.path().join("programs/vsteer_connect4");
    let mut passes = vec![(
        if largest {
            "vsteer_connect4".to_string()
        } else {
            format!("vsteer_connect4 ({services} services)")
        },
        vec![vip()],
    )];
    if largest {
        passes.push((
            "vsteer_connect4, CIDR range".to_string(),
            vec![range_address()],
        ));
        passes.push((
            "vsteer_connect4, no service".to_string(),
            ways[0].targets.clone(),
        ));
    }
    for (name, targets) in passes {
        let stats = system::BpfStats::enable()?;
        let before = system::program_stats(&program)?;
        short(bench, &stage.ns, &steered, &targets)?;
        let after = system::program_stats(&program)?;
        drop(stats);
        let calls = after.0.saturating_sub(before.0);
        let time = after.1.saturating_sub(before.1);
        results.kernel.push(KernelCost {
            program: name,
            calls,
            ns_per_call: if calls == 0 {
                f64::NAN
            } else {
                time as f64 / calls as f64
            },
        });
    }
    if services == 1 {
        throughput(bench, &stage.ns, &steered, &plain, results)?;
    }
    drop(haproxy);
    drop(agent);
    std::fs::remove_dir_all(&config).ok();
    // The nat namespace, its rules and backends go with `nat`.
    Ok(())
}

/// Scenario 2: one long connection, direct and through vsteer (the agent is running), round
/// by round.
fn throughput(
    bench: &Bench,
    ns: &NetNs,
    steered: &TestCgroup,
    plain: &TestCgroup,
    results: &mut Results,
) -> Result<()> {
    let backend = SocketAddr::new(
        IpAddr::V4(workload::STREAM_BACKEND),
        workload::STREAM_BACKEND_PORT,
    );
    let _stream = Backend::stream_on(ns, backend, bench.server_cpu)?;
    let vip = SocketAddr::new(IpAddr::V4(workload::STREAM_VIP), workload::STREAM_PORT);
    // Direct first: the ratios are taken to it.
    let ways = [
        (Variant::Direct, plain, backend),
        (Variant::Vsteer, steered, vip),
    ];
    let samples = measure::rounds(ways.len(), bench.scale.repeats, |k| {
        bench.interrupt.check()?;
        let (_, cgroup, target) = ways[k];
        stream_bytes(
            ns,
            Some(cgroup),
            target,
            bench.scale.stream_secs,
            Some(bench.client_cpu),
        )?
        .with_context(|| format!("streaming from {target}: connect failed"))
    })?;
    let direct = samples.first().cloned().unwrap_or_default();
    for ((variant, _, _), rounds) in ways.into_iter().zip(samples) {
        results.throughput.push(Throughput {
            variant,
            bytes_per_sec: Stat::of(&rounds),
            vs_direct: per_round_ratio(&rounds, &direct),
            rounds,
        });
    }
    Ok(())
}

/// The timings of one "config applied" line, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Applied {
    /// `apply_us`: the diff written into the kernel maps.
    apply_ms: f64,
    /// `total_us` (debounced delivery to maps written), or `read_us + compile_us + apply_us`
    /// from an agent that does not log it.
    end_to_end_ms: f64,
    /// Whether `end_to_end_ms` is `total_us`.
    from_total: bool,
    /// `settle_ms`: first file event to debounced delivery, when logged.
    settle_ms: Option<f64>,
}

impl Applied {
    fn parse(line: &str) -> Applied {
        // tracing's key=value fields, separated by spaces.
        let field = |name: &str| -> Option<f64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let ms = |name: &str| field(name).map(|us| us / 1_000.0);
        let total = ms("total_us");
        let sum = match (ms("read_us"), ms("compile_us"), ms("apply_us")) {
            (Some(read), Some(compile), Some(apply)) => read + compile + apply,
            _ => f64::NAN,
        };
        Applied {
            apply_ms: ms("apply_us").unwrap_or(f64::NAN),
            end_to_end_ms: total.unwrap_or(sum),
            from_total: total.is_some(),
            settle_ms: field("settle_ms"),
        }
    }
}

/// Scenario 3a: a one-service weight change with many services configured: vsteer's
/// reload (read, compile, diffed map write) against kube-proxy's `iptables-restore`.
pub fn update_cost(bench: &Bench, results: &mut Results) -> Result<()> {
    let services = bench.scale.update_services;
    let cgroup = TestCgroup::new()?;
    let config = bench.work.join(format!("update-{services}"));
    workload::write_vsteer_config(&config, services, false)?;
    let mut applied = Vec::new();
    {
        let mut agent = agent(bench, &cgroup, &config)?;
        for r in 0..bench.scale.repeats {
            bench.interrupt.check()?;
            applied.push(Applied::parse(&agent.change(&config, r + 1)?));
        }
    }
    std::fs::remove_dir_all(&config).ok();
    let restore = iptables_restore_ms(bench, services)?;
    let pick = |f: fn(&Applied) -> f64| Stat::of(&applied.iter().map(f).collect::<Vec<_>>());
    let settle = pick(|a| a.settle_ms.unwrap_or(f64::NAN));
    let from = match applied.iter().filter(|a| a.from_total).count() {
        n if n == applied.len() => "total_us",
        0 => "read_us+compile_us+apply_us",
        _ => "mixed",
    };
    results.update.push(UpdateCost {
        services,
        vsteer_apply_ms: pick(|a| a.apply_ms),
        vsteer_reload_ms: pick(|a| a.end_to_end_ms),
        vsteer_reload_from: from.to_string(),
        vsteer_settle_ms: settle,
        iptables_restore_ms: restore,
    });
    let timing = if from == "read_us+compile_us+apply_us" {
        "this agent logs no total_us, so end to end is its read_us + compile_us + apply_us \
         (reading the changed file, recompiling what it touches, writing the diff; without \
         the bookkeeping around them)"
            .to_string()
    } else {
        format!(
            "end to end is the agent's own total_us ({from}): from the debounced file event to \
             the kernel maps written (reading the changed file, recompiling the services it \
             touches among {services}, writing the diff, bookkeeping)"
        )
    };
    let settle_note = if settle.median.is_finite() {
        format!(
            "the settle before it (first file event to debounced delivery, settle_ms) is \
             reported apart and not counted: median {:.0} ms",
            settle.median
        )
    } else {
        "this agent logs no settle_ms; it waits 200 ms after a file event for the write to \
         settle, which is not counted"
            .to_string()
    };
    results.notes.push(format!(
        "one-service change at {services} services: {timing}; {settle_note}"
    ));
    Ok(())
}

/// kube-proxy's answer to a change with `services` services: `iptables-restore` of the
/// whole ruleset, ms, once per repetition, in a namespace of its own.
pub(super) fn iptables_restore_ms(bench: &Bench, services: usize) -> Result<Stat> {
    let ns = NetNs::new()?;
    let ruleset = workload::iptables_ruleset(services);
    let mut restore = Vec::new();
    for _ in 0..bench.scale.repeats {
        bench.interrupt.check()?;
        restore.push(peers::iptables_restore(&ns, &ruleset)?.as_secs_f64() * 1_000.0);
    }
    peers::iptables_flush(&ns)?;
    Ok(Stat::of(&restore))
}

/// Scenario 3b: compiling and loading N VirtualServices (each with its ServiceEntry and
/// DestinationRule) from YAML: the agent's start to its datapath ready, and its peak RSS.
pub fn load_cost(bench: &Bench, results: &mut Results) -> Result<()> {
    let count = bench.scale.load_virtual_services;
    let cgroup = TestCgroup::new()?;
    let config = bench.work.join(format!("load-{count}"));
    workload::write_vsteer_config(&config, count, true)?;
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..bench.scale.repeats {
        bench.interrupt.check()?;
        let agent = agent(bench, &cgroup, &config)?;
        times.push(agent.ready_after.as_secs_f64() * 1_000.0);
        let (_, hwm) = system::memory_kib(agent.process.pid())?;
        peak = peak.max(hwm);
    }
    std::fs::remove_dir_all(&config).ok();
    results.load.push(LoadCost {
        virtual_services: count,
        load_ms: Stat::of(&times),
        peak_rss_kib: peak,
    });
    Ok(())
}

/// Scenario 3c: the agent's memory with N services, each with a ServiceEntry, a
/// VirtualService and a DestinationRule: when ready, and after a number of one-service
/// changes (whether reloads leak). One fresh agent per repetition.
pub fn memory_at_scale(bench: &Bench, results: &mut Results) -> Result<()> {
    let services = bench.scale.memory_services;
    let reloads = bench.scale.memory_reloads;
    let cgroup = TestCgroup::new()?;
    let config = bench.work.join(format!("memory-{services}"));
    workload::write_vsteer_config(&config, services, true)?;
    let mut runs = Vec::new();
    let mut tools = Vec::new();
    for _ in 0..bench.scale.repeats {
        bench.interrupt.check()?;
        // Every repetition starts from the same config.
        workload::write_measured(&config, 0)?;
        let mut agent = agent(bench, &cgroup, &config)?;
        let pid = agent.process.pid();
        let (ready_rss_kib, ready_hwm_kib) = system::memory_kib(pid)?;
        for r in 0..reloads {
            bench.interrupt.check()?;
            // Variants 1, 2, ...: weights alternate, so every write is a change.
            agent.change(&config, r + 1)?;
        }
        let (after_rss_kib, after_hwm_kib) = system::memory_kib(pid)?;
        // The tools an operator runs on such a node, while the agent runs.
        let mut plan = Command::new(&bench.vsteer);
        plan.arg("plan").arg("--config").arg(&config);
        let plan = system::run_measured(plan)?;
        let mut status = Command::new(&bench.vsteer);
        status.arg("status").arg("--pin-dir").arg(agent.pins.path());
        let status = system::run_measured(status)?;
        tools.push((plan, status));
        runs.push(MemorySample {
            ready_rss_kib,
            ready_hwm_kib,
            after_rss_kib,
            after_hwm_kib,
        });
    }
    std::fs::remove_dir_all(&config).ok();
    results
        .memory
        .push(MemoryAtScale::from_runs(services, reloads, runs));
    let stat =
        |f: fn(&(Measured, Measured)) -> f64| Stat::of(&tools.iter().map(f).collect::<Vec<_>>());
    results.cli.push(CliAtScale {
        services,
        endpoints: workload::endpoints_of(services),
        plan_ms: stat(|(plan, _)| plan.wall.as_secs_f64() * 1_000.0),
        plan_peak_kib: stat(|(plan, _)| plan.max_rss_kib as f64),
        status_ms: stat(|(_, status)| status.wall.as_secs_f64() * 1_000.0),
        status_peak_kib: stat(|(_, status)| status.max_rss_kib as f64),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_line_with_total_and_settle() {
        let line = "2026-12-01T10:00:00.123Z  INFO vsteer::cli::run: config applied added=0 \
                    changed=1 removed=0 unchanged=29999 settle_ms=201 read_us=1500 \
                    compile_us=4200 apply_us=900 total_us=7100";
        let a = Applied::parse(line);
        assert_eq!(a.apply_ms, 0.9);
        // total_us, not the sum of the parts (6.6 ms): it includes the bookkeeping.
        assert_eq!(a.end_to_end_ms, 7.1);
        assert!(a.from_total);
        assert_eq!(a.settle_ms, Some(201.0));
    }

    #[test]
    fn applied_line_of_todays_agent_falls_back_to_the_parts() {
        let line = "2026-12-01T10:00:00.123Z  INFO vsteer::cli::run: config applied added=0 \
                    changed=1 removed=0 unchanged=99 read_us=1500 compile_us=4200 apply_us=900";
        let a = Applied::parse(line);
        assert!((a.end_to_end_ms - 6.6).abs() < 1e-12, "{a:?}");
        assert!(!a.from_total);
        assert_eq!(a.settle_ms, None);
        // A missing part gives no number, not a smaller one.
        let a = Applied::parse("config applied read_us=1500 apply_us=900");
        assert!(a.end_to_end_ms.is_nan());
        assert_eq!(a.apply_ms, 0.9);
        // `xtotal_us=` is another field; a garbled value is no value.
        let a = Applied::parse("config applied xtotal_us=5 total_us=abc apply_us=1");
        assert!(!a.from_total);
    }
}
