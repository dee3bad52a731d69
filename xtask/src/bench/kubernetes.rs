//! Scenario 6: Kubernetes mode at scale. The test API server holds N Services, each with an
//! EndpointSlice of two ready endpoints and their two pods; the agent (`--source kubernetes`)
//! lists them all, then EndpointSlices change ten times a second (one endpoint's `ready`
//! flips): the time from each change at the API server to the kernel maps written (the
//! agent's "config applied" line, by its own timestamp), and the agent's RSS and CPU while
//! the changes run. kube-proxy's iptables mode answered such a change with an
//! `iptables-restore` of its whole ruleset (before 1.28's MinimizeIPTablesRestore), timed in
//! the same run.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use vsteer_testkit::agent::RunPlacement;
use vsteer_testkit::kube_api::{IstioApi, KubeApi};
use vsteer_testkit::{AgentProcess, PinDir, TestCgroup};

use super::results::{KubernetesSync, Results};
use super::{Bench, system};

/// The changes' pace: one every 100 ms.
const PACE: Duration = Duration::from_millis(100);
const READY: Duration = Duration::from_secs(600);
const APPLIED: Duration = Duration::from_secs(10);

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip(i), "clusterIPs": [cluster_ip(i)],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
    })
}

/// 10.96.0.1 onwards: never routed, the bench only measures the maps.
fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", i / 250, i % 250 + 1)
}

fn endpoint_ip(i: usize, e: usize) -> String {
    let n = i * 2 + e;
    format!(
        "10.{}.{}.{}",
        128 + n / 62_500,
        (n / 250) % 250,
        n % 250 + 1
    )
}

/// Service `i`'s slice; its second endpoint ready or not.
fn slice(i: usize, second_ready: bool) -> Value {
    let endpoint = |e: usize, ready: bool| {
        json!({"addresses": [endpoint_ip(i, e)],
               "conditions": {"ready": ready, "serving": ready, "terminating": false},
               "targetRef": {"kind": "Pod", "namespace": "bench", "name": format!("svc-{i}-{e}")}})
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-x"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [endpoint(0, true), endpoint(1, second_ready)]
    })
}

fn pod(i: usize, e: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("svc-{i}-{e}"), "namespace": "bench",
                     "labels": {"app": format!("svc-{i}"), "version": format!("v{}", e + 1)}},
        "spec": {"nodeName": "node-1"}
    })
}

pub fn kubernetes_sync(bench: &Bench, results: &mut Results) -> Result<()> {
    let services = bench.scale.kubernetes_services;
    let changes = bench.scale.kubernetes_changes;
    let api = KubeApi::start(IstioApi::V1)?;
    for i in 0..services {
        bench.interrupt.check()?;
        api.apply(service(i))?;
        api.apply(slice(i, true))?;
        api.apply(pod(i, 0))?;
        api.apply(pod(i, 1))?;
    }
    // The log of the objects' creation is no watch's business: the agent lists.
    api.compact();
    let kubeconfig = bench.work.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;

    let cgroup = TestCgroup::new()?;
    let pins = PinDir::new();
    let started = Instant::now();
    let mut agent = start_agent(bench, &kubeconfig, &cgroup, &pins)?;
    let ready_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let pid = agent.pid();
    let (ready_rss_kib, _) = system::memory_kib(pid)?;

    let mut latencies = Vec::new();
    let mut peak_rss_kib = ready_rss_kib;
    let cpu_before = system::cpu_seconds(pid)?;
    let run_started = Instant::now();
    // Every change flips a slice's second endpoint from what it is: never a no-op.
    let mut second_ready = vec![true; services];
    for k in 0..changes {
        bench.interrupt.check()?;
        let due = run_started + PACE * k as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // Spread over the services; every change flips one endpoint of one slice.
        let i = (k * 7_919) % services;
        agent.drain();
        let sent = SystemTime::now();
        second_ready[i] = !second_ready[i];
        api.apply(slice(i, second_ready[i]))?;
        let line = agent.wait_for("config applied", APPLIED)?;
        latencies.push(since(sent, &line)?.as_secs_f64() * 1_000.0);
        peak_rss_kib = peak_rss_kib.max(system::memory_kib(pid)?.0);
    }
    let wall = run_started.elapsed().as_secs_f64();
    let cpu_cores = (system::cpu_seconds(pid)? - cpu_before) / wall;
    let (_, hwm_kib) = system::memory_kib(pid)?;
    drop(agent);

    let restore = super::scenarios::iptables_restore_ms(bench, services)?;

    let rate = changes as f64 / wall;
    results.kubernetes.push(KubernetesSync {
        services,
        pods: services * 2,
        changes,
        changes_per_sec: rate,
        ready_ms,
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.iter().copied().fold(f64::NAN, f64::max),
        ready_rss_kib,
        peak_rss_kib,
        hwm_kib,
        cpu_cores,
        iptables_restore_ms: restore,
    });
    Ok(())
}

fn start_agent(
    bench: &Bench,
    kubeconfig: &Path,
    cgroup: &TestCgroup,
    pins: &PinDir,
) -> Result<AgentProcess> {
    let placement = RunPlacement {
        cgroup: cgroup.path(),
        pin_dir: pins.path(),
        proxy_addr: "127.0.0.1:0",
        admin_addr: "off",
    };
    let extra: [&std::ffi::OsStr; 4] = [
        "--source".as_ref(),
        "kubernetes".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
    ];
    AgentProcess::start_run(
        &bench.vsteer,
        &placement,
        &extra,
        vsteer_testkit::READY,
        READY,
    )
}

/// How long after `sent` the agent logged `line` (by the line's own UTC timestamp, so the
/// pipe from the agent to the bench is not counted). Both clocks are this machine's.
fn since(sent: SystemTime, line: &str) -> Result<Duration> {
    let logged = line_time(line).with_context(|| format!("no timestamp in {line:?}"))?;
    let sent = sent.duration_since(UNIX_EPOCH)?.as_secs_f64();
    // Time of day only (the line carries the date too): a change never spans midnight's
    // wrap by more than the modulo takes care of.
    let day = 86_400.0;
    let delta = (logged - sent % day).rem_euclid(day);
    if delta > day / 2.0 {
        bail!("the agent's line {line:?} predates the change");
    }
    Ok(Duration::from_secs_f64(delta))
}

/// Seconds since midnight UTC of a tracing line `2026-12-01T18:18:16.462838Z ...`.
fn line_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.strip_suffix('Z')?;
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3_600.0 + minutes * 60.0 + seconds)
}

/// The `q` quantile (nearest rank) of `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lines_timestamp_is_read_as_seconds_of_the_day() {
        let line = "2026-12-01T18:18:16.462838Z  INFO vsteer::app::run: config applied";
        let t = line_time(line).expect("time");
        assert!((t - (18.0 * 3_600.0 + 18.0 * 60.0 + 16.462838)).abs() < 1e-6);
        assert_eq!(line_time("config applied"), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 100.0);
        assert_eq!(percentile(&values, 0.99), 198.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn addresses_stay_distinct_and_valid_at_30000_services() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..30_000 {
            assert!(seen.insert(cluster_ip(i)));
            for e in 0..2 {
                let ip = endpoint_ip(i, e);
                assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
                assert!(seen.insert(ip));
            }
        }
    }
}
