//! The L7 scenario: the seed's header rule (`end-user: jason` to v2, everything else to v3)
//! served by vsteer's proxy, by nginx and by haproxy, under keep-alive HTTP/1.1 (wrk) and
//! HTTP/2 (h2load), against the backend straight; and a kernel-path service's short
//! connections with the proxy running.
//!
//! Everything runs in one network namespace of the bench's own (the "node"): the backends,
//! the proxies, the agents and the clients, on loopback addresses. The measured proxy (nginx's
//! one worker, haproxy's one thread, the agent with `--proxy-threads 1`) is pinned to the
//! server CPU; clients and backends share the other one, so each proxy has a core of its own
//! and the same one.
use std::{
    ffi::{OsStr, OsString},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use vsteer_testkit::{AgentProcess, Backend, NetNs, PinDir, TestCgroup};

use super::{
    Bench,
    l7_workload::{self as w, BACKEND_H2_PORT, BACKEND_PORT, H2_PORT, PORT},
    loadgen::{self, Generator, Placement},
    peers::{self, Daemon},
    results::{
        KernelPathRun, KernelPathVariant, L7Load, L7Results, L7Run, L7Sample, L7Variant, Results,
        RoundSample,
    },
    scenarios, system, workload,
};

const AGENT_READY: Duration = Duration::from_secs(300);
/// wrk: one thread, 32 keep-alive connections.
const WRK_CONNECTIONS: u32 = 32;
/// h2load: per process (two run side by side, with and without the header), 4 connections
/// of 4 concurrent streams: 32 requests in flight in all, as with wrk.
const H2LOAD_CLIENTS: u32 = 4;
const H2LOAD_STREAMS: u32 = 4;
/// The proxy's listener inside the bench's namespace.
const PROXY_ADDR: &str = "127.0.0.1:15001";

fn addr(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// The v3 backend: direct's target.
fn v3(port: u16) -> SocketAddr {
    addr(w::BACKENDS[2].1, port)
}

/// One variant under one load: who serves it, where its client dials, where that client runs.
struct Way<'a> {
    load: L7Load,
    variant: L7Variant,
    target: SocketAddr,
    cgroup: &'a TestCgroup,
    /// The proxy process to measure (None for direct).
    proxy: Option<u32>,
}

/// `vsteer run` with `args` inside `ns` (and in `member`, when given), pinned to `cpu` when
/// given; stopped by its pid on drop.
fn agent(
    bench: &Bench,
    ns: &NetNs,
    member: Option<&TestCgroup>,
    cpu: Option<usize>,
    args: &[OsString],
) -> Result<AgentProcess> {
    let mut all: Vec<OsString> = Vec::new();
    let binary = match cpu {
        Some(cpu) => {
            // taskset execs the agent: the pid stays the agent's.
            all.extend([
                "-c".into(),
                cpu.to_string().into(),
                bench.vsteer.clone().into(),
            ]);
            PathBuf::from("taskset")
        }
        None => bench.vsteer.clone(),
    };
    all.extend(args.iter().cloned());
    let all: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
    AgentProcess::start_in(&binary, &all, AGENT_READY, ns, member)
}

/// `run --config CONFIG --cgroup ATTACH --pin-dir PINS --admin-addr off EXTRA...`
fn run_args(config: &Path, attach: &TestCgroup, pins: &PinDir, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "run".into(),
        "--config".into(),
        config.into(),
        "--cgroup".into(),
        attach.path().into(),
        "--pin-dir".into(),
        pins.path().into(),
        "--state-dir".into(),
        pins.state_dir().into(),
        "--admin-addr".into(),
        "off".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

pub fn l7_proxies(bench: &Bench, results: &mut Results) -> Result<()> {
    let work = bench.work.join("l7");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // The proxy's agent and its clients are in `steered`, the one it attaches to (its own
    // upstream sockets meet the hook and pass by their mark); the `--no-proxy` agent's
    // clients in `steered_np`; the other variants' clients in `plain`, with no program.
    let steered = TestCgroup::new()?;
    let steered_np = TestCgroup::new()?;
    let plain = TestCgroup::new()?;
    let ns = NetNs::new()?;
    ns.run(|| std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535"))?
        .context("widening the namespace's port range")?;

    let backends_cfg = work.join("backends.conf");
    std::fs::write(&backends_cfg, w::nginx_backends_config(&work))
        .context("writing backends.conf")?;
    let ready: Vec<SocketAddr> = w::BACKENDS
        .iter()
        .flat_map(|(_, ip)| [addr(*ip, BACKEND_PORT), addr(*ip, BACKEND_H2_PORT)])
        .collect();
    let backends = peers::nginx(&ns, &backends_cfg, &work, bench.client_cpu, &ready)?;
    let nginx_cfg = work.join("proxy.conf");
    std::fs::write(&nginx_cfg, w::nginx_proxy_config(&work)).context("writing proxy.conf")?;
    let nginx = peers::nginx(
        &ns,
        &nginx_cfg,
        &work,
        bench.server_cpu,
        &[addr(w::NGINX, PORT), addr(w::NGINX, H2_PORT)],
    )?;
    let haproxy_cfg = work.join("haproxy.cfg");
    std::fs::write(&haproxy_cfg, w::haproxy_config()).context("writing haproxy.cfg")?;
    let haproxy = peers::haproxy(
        &ns,
        &haproxy_cfg,
        bench.server_cpu,
        &[addr(w::HAPROXY, PORT), addr(w::HAPROXY, H2_PORT)],
    )?;

    // The kernel-path service's 4 TCP backends, as in the connect scenario.
    let mut tcp_backends: Vec<Backend> = Vec::new();
    for b in workload::BACKENDS {
        let a = addr(b, workload::BACKEND_PORT);
        tcp_backends.push(Backend::tcp_on(&ns, a, &a.to_string(), bench.server_cpu)?);
    }

    let config = work.join("vsteer");
    w::write_vsteer_config(&config)?;
    // The same CPU budget as nginx's one worker and haproxy's one thread: one proxy thread,
    // the whole agent pinned to the server CPU.
    let pins = PinDir::new();
    let vsteer = agent(
        bench,
        &ns,
        Some(&steered),
        Some(bench.server_cpu),
        &run_args(
            &config,
            &steered,
            &pins,
            &["--proxy-addr", PROXY_ADDR, "--proxy-threads", "1"],
        ),
    )?;
    let pins_np = PinDir::new();
    let no_proxy = agent(
        bench,
        &ns,
        None,
        None,
        &run_args(&config, &steered_np, &pins_np, &["--no-proxy"]),
    )?;

    let at = |cgroup| Placement {
        ns: &ns,
        cgroup,
        cpu: bench.client_cpu,
    };
    let vip = addr(w::VIP, PORT);
    let mut ways = Vec::new();
    for load in [L7Load::Http1, L7Load::Http2] {
        let port = |h1: u16, h2: u16| if load == L7Load::Http1 { h1 } else { h2 };
        ways.extend([
            Way {
                load,
                variant: L7Variant::Direct,
                target: v3(port(BACKEND_PORT, BACKEND_H2_PORT)),
                cgroup: &plain,
                proxy: None,
            },
            Way {
                load,
                variant: L7Variant::Vsteer,
                // The proxy detects HTTP/2's preface on the same port.
                target: vip,
                cgroup: &steered,
                proxy: Some(vsteer.pid()),
            },
            Way {
                load,
                variant: L7Variant::Nginx,
                target: addr(w::NGINX, port(PORT, H2_PORT)),
                cgroup: &plain,
                proxy: Some(nginx.pid()),
            },
            Way {
                load,
                variant: L7Variant::Haproxy,
                target: addr(w::HAPROXY, port(PORT, H2_PORT)),
                cgroup: &plain,
                proxy: Some(haproxy.pid()),
            },
        ]);
    }
    for way in &ways {
        check_routing(at(way.cgroup), way)?;
    }
    let secs = bench.scale.l7_secs;
    let samples = super::measure::rounds(ways.len(), bench.scale.repeats, |k| {
        bench.interrupt.check()?;
        let way = &ways[k];
        measure(&work, at(way.cgroup), way, &backends, secs)
            .with_context(|| format!("{} under {}", way.variant.label(), way.load.label()))
    })?;
    let mut runs = Vec::new();
    for load in [L7Load::Http1, L7Load::Http2] {
        let of = |variant| {
            ways.iter()
                .zip(&samples)
                .find(|(way, _)| way.load == load && way.variant == variant)
                .map(|(_, rounds)| rounds.clone())
                .unwrap_or_default()
        };
        let direct = of(L7Variant::Direct);
        let nginx_rounds = of(L7Variant::Nginx);
        for variant in [
            L7Variant::Direct,
            L7Variant::Vsteer,
            L7Variant::Nginx,
            L7Variant::Haproxy,
        ] {
            runs.push(L7Run::from_rounds(
                load,
                variant,
                of(variant),
                &direct,
                &nginx_rounds,
            ));
        }
    }

    // The kernel path, with the proxy running next to it: short connections to the
    // connect scenario's 4-backend service through the same agent, direct, and through the
    // `--no-proxy` agent, round by round.
    let direct_targets: Vec<SocketAddr> = workload::BACKENDS
        .iter()
        .map(|b| addr(*b, workload::BACKEND_PORT))
        .collect();
    let measured = addr(workload::VIP, workload::PORT);
    let kernel_ways = [
        (KernelPathVariant::Direct, &plain, direct_targets),
        (KernelPathVariant::VsteerProxy, &steered, vec![measured]),
        (
            KernelPathVariant::VsteerNoProxy,
            &steered_np,
            vec![measured],
        ),
    ];
    let kernel_samples: Vec<Vec<RoundSample>> =
        super::measure::rounds(kernel_ways.len(), bench.scale.repeats, |k| {
            let (variant, cgroup, targets) = &kernel_ways[k];
            scenarios::short(bench, &ns, cgroup, targets)
                .with_context(|| format!("kernel path, {}", variant.label()))
        })?;
    let mut kernel_path = Vec::new();
    for ((variant, _, _), rounds) in kernel_ways.iter().zip(&kernel_samples) {
        kernel_path.push(KernelPathRun::from_rounds(
            *variant,
            rounds.clone(),
            &kernel_samples[0],
            &kernel_samples[2],
        ));
    }

    drop(no_proxy);
    drop(vsteer);
    drop((haproxy, nginx, backends));
    drop(tcp_backends);
    results.l7 = L7Results {
        runs,
        kernel_path,
        wrk_connections: WRK_CONNECTIONS,
        h2load_clients: H2LOAD_CLIENTS,
        h2load_streams: H2LOAD_STREAMS,
        secs,
    };
    std::fs::remove_dir_all(&work).ok();
    Ok(())
}

/// Before it is measured, each variant must route as the seed says: with the header to v2,
/// without it to v3 (direct: v3 either way), over the load's protocol.
fn check_routing(at: Placement<'_>, way: &Way<'_>) -> Result<()> {
    let http2 = way.load == L7Load::Http2;
    for jason in [true, false] {
        let expected = if jason && way.variant != L7Variant::Direct {
            "v2"
        } else {
            "v3"
        };
        let body = loadgen::curl(at, way.target, jason, http2)?;
        if body != w::body(expected) {
            bail!(
                "{} ({}) answered {body:?} to a request {} the header; the seed's rule says {}",
                way.variant.label(),
                way.load.label(),
                if jason { "with" } else { "without" },
                expected
            );
        }
    }
    Ok(())
}

/// One run: the load for `secs`; the proxy's CPU over it, its RSS in the middle of it.
fn measure(
    work: &Path,
    at: Placement<'_>,
    way: &Way<'_>,
    backends: &Daemon,
    secs: u32,
) -> Result<L7Sample> {
    let generator = match way.load {
        L7Load::Http1 => Generator::Wrk {
            connections: WRK_CONNECTIONS,
        },
        L7Load::Http2 => Generator::H2load {
            clients: H2LOAD_CLIENTS,
            streams: H2LOAD_STREAMS,
        },
    };
    let cpu = |pid: Option<u32>| pid.map(system::cpu_seconds).transpose();
    let idle = way.proxy.map(system::memory_kib).transpose()?;
    let proxy_before = cpu(way.proxy)?;
    let backend_before = system::cpu_seconds(backends.pid())?;
    let running = loadgen::start(generator, at, way.target, secs, work)?;
    std::thread::sleep(Duration::from_secs_f64(f64::from(secs) / 2.0));
    let rss = way.proxy.map(system::memory_kib).transpose()?;
    let numbers = running.finish()?;
    let proxy_after = cpu(way.proxy)?;
    let backend_after = system::cpu_seconds(backends.pid())?;
    let hwm = way.proxy.map(system::memory_kib).transpose()?;
    // The load's own duration is the window: the proxies idle before and after it.
    let window = if numbers.secs > 0.0 {
        numbers.secs
    } else {
        f64::from(secs)
    };
    Ok(L7Sample {
        requests_per_sec: numbers.requests_per_sec,
        p50_us: numbers.p50_us,
        p99_us: numbers.p99_us,
        requests: numbers.requests,
        proxy_cores: match (proxy_before, proxy_after) {
            (Some(before), Some(after)) => (after - before) / window,
            _ => f64::NAN,
        },
        proxy_rss_kib: rss.map_or(0, |(rss, _)| rss),
        proxy_idle_rss_kib: idle.map_or(0, |(rss, _)| rss),
        proxy_hwm_kib: hwm.map_or(0, |(_, hwm)| hwm),
        backend_cores: (backend_after - backend_before) / window,
    })
}
