//! What a bench run measured: plain data, rendered by `report` and `plot`.
use serde::Serialize;

/// min / median / max of repeated measurements.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Stat {
    /// From samples (at least one; an empty slice gives NaNs).
    pub fn of(samples: &[f64]) -> Stat {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let pick = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
        Stat {
            min: pick(0),
            median: pick(sorted.len().saturating_sub(1) / 2),
            max: pick(sorted.len().saturating_sub(1)),
        }
    }
}

/// The machine and run the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    /// UTC date and time of the run.
    pub date: String,
    /// The command that made the numbers, e.g. `cargo xtask bench --quick`.
    pub command: String,
    /// Repetitions behind each min/median/max.
    pub repeats: usize,
}

/// The ways a client can reach a service's backends.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// Straight to a backend's address: the physical limit.
    Direct,
    /// vsteer's connect hook rewrites the VIP (weighted selection included).
    Vsteer,
    /// The same, to an address of a CIDR range: the exact lookup misses, the range trie hits.
    VsteerRange,
    /// vsteer's hook on a connect to no service (straight to a backend): both lookups miss.
    VsteerMiss,
    /// kube-proxy-style iptables DNAT with statistic-probability chains.
    Iptables,
    /// A userspace TCP proxy: haproxy in TCP mode.
    Haproxy,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Vsteer => "vsteer",
            Variant::VsteerRange => "vsteer, CIDR range",
            Variant::VsteerMiss => "vsteer hook, no service",
            Variant::Iptables => "iptables DNAT",
            Variant::Haproxy => "haproxy (TCP)",
        }
    }
}

/// The ways a client reaches the L7 scenario's service (the seed's `reviews`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L7Variant {
    /// Straight to the v3 backend: no proxy, the baseline.
    Direct,
    /// The client dials the VIP; the connect hook sends it to the agent's proxy.
    Vsteer,
    /// nginx as a reverse proxy, `map $http_end_user` picking the upstream.
    Nginx,
    /// haproxy in HTTP mode, `use_backend` on an acl on the header.
    Haproxy,
}

impl L7Variant {
    pub fn label(self) -> &'static str {
        match self {
            L7Variant::Direct => "direct",
            L7Variant::Vsteer => "vsteer",
            L7Variant::Nginx => "nginx",
            L7Variant::Haproxy => "haproxy (HTTP)",
        }
    }
}

/// The L7 scenario's load generators.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L7Load {
    /// wrk, keep-alive HTTP/1.1.
    Http1,
    /// h2load, HTTP/2 prior knowledge (h2c).
    Http2,
}

impl L7Load {
    pub fn label(self) -> &'static str {
        match self {
            L7Load::Http1 => "wrk HTTP/1.1",
            L7Load::Http2 => "h2load HTTP/2",
        }
    }
}

/// One round's numbers of one L7 variant under one load.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct L7Sample {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
    /// The proxy process's CPU over the load window, in cores (1.0: one core busy the whole
    /// time); NaN for direct.
    pub proxy_cores: f64,
    /// The proxy's VmRSS in the middle of the window and its VmHWM after it, KiB; 0 for
    /// direct.
    pub proxy_rss_kib: u64,
    pub proxy_hwm_kib: u64,
    /// The proxy's VmRSS just before the run, after the idle time since its previous one,
    /// KiB; 0 for direct.
    pub proxy_idle_rss_kib: u64,
    /// The backends' nginx over the same window, in cores.
    pub backend_cores: f64,
}

impl L7Sample {
    /// The proxy's CPU per 1,000 requests/s, in percent of a core.
    pub fn cpu_percent_per_krps(&self) -> f64 {
        if self.requests_per_sec > 0.0 {
            self.proxy_cores * 100.0 / (self.requests_per_sec / 1_000.0)
        } else {
            f64::NAN
        }
    }

    /// The proxy's RSS per 1,000 requests/s, KiB; NaN when not measured.
    pub fn rss_kib_per_krps(&self) -> f64 {
        if self.proxy_rss_kib > 0 && self.requests_per_sec > 0.0 {
            self.proxy_rss_kib as f64 / (self.requests_per_sec / 1_000.0)
        } else {
            f64::NAN
        }
    }

    fn as_round(&self) -> RoundSample {
        RoundSample {
            conns_per_sec: self.requests_per_sec,
            p50_us: self.p50_us,
            p99_us: self.p99_us,
        }
    }
}

/// The L7 scenario: one variant under one load; every variant and load ran in the same
/// rounds.
#[derive(Debug, Clone, Serialize)]
pub struct L7Run {
    pub load: L7Load,
    pub variant: L7Variant,
    pub requests_per_sec: Stat,
    pub p50_us: Stat,
    pub p99_us: Stat,
    pub proxy_cores: Stat,
    pub cpu_percent_per_krps: Stat,
    pub proxy_rss_kib: Stat,
    pub proxy_hwm_kib: Stat,
    pub proxy_idle_rss_kib: Stat,
    pub rss_kib_per_krps: Stat,
    pub backend_cores: Stat,
    /// Each measured round, in round order.
    pub rounds: Vec<L7Sample>,
    /// Per-round ratios to direct and to nginx under the same load (`conns_per_sec` holds
    /// requests/s); latencies too: above 1 is slower.
    pub vs_direct: RoundRatios,
    pub vs_nginx: RoundRatios,
    /// Per-round latency added over direct (variant minus direct, µs).
    pub added_p50_us: Stat,
    pub added_p99_us: Stat,
}

impl L7Run {
    pub fn from_rounds(
        load: L7Load,
        variant: L7Variant,
        rounds: Vec<L7Sample>,
        direct: &[L7Sample],
        nginx: &[L7Sample],
    ) -> L7Run {
        let stat =
            |f: &dyn Fn(&L7Sample) -> f64| Stat::of(&rounds.iter().map(f).collect::<Vec<_>>());
        let as_rounds = |s: &[L7Sample]| s.iter().map(L7Sample::as_round).collect::<Vec<_>>();
        let mine = as_rounds(&rounds);
        let added = |f: fn(&L7Sample) -> f64| {
            let diffs: Vec<f64> = rounds
                .iter()
                .zip(direct)
                .map(|(r, d)| f(r) - f(d))
                .filter(|d| d.is_finite())
                .collect();
            Stat::of(&diffs)
        };
        L7Run {
            load,
            variant,
            requests_per_sec: stat(&|r| r.requests_per_sec),
            p50_us: stat(&|r| r.p50_us),
            p99_us: stat(&|r| r.p99_us),
            proxy_cores: stat(&|r| r.proxy_cores),
            cpu_percent_per_krps: stat(&L7Sample::cpu_percent_per_krps),
            proxy_rss_kib: stat(&|r| positive(r.proxy_rss_kib)),
            proxy_hwm_kib: stat(&|r| positive(r.proxy_hwm_kib)),
            proxy_idle_rss_kib: stat(&|r| positive(r.proxy_idle_rss_kib)),
            rss_kib_per_krps: stat(&L7Sample::rss_kib_per_krps),
            backend_cores: stat(&|r| r.backend_cores),
            vs_direct: RoundRatios::between(&mine, &as_rounds(direct)),
            vs_nginx: RoundRatios::between(&mine, &as_rounds(nginx)),
            added_p50_us: added(|r| r.p50_us),
            added_p99_us: added(|r| r.p99_us),
            rounds,
        }
    }
}

/// 0 (not measured) as NaN.
fn positive(kib: u64) -> f64 {
    if kib > 0 { kib as f64 } else { f64::NAN }
}

/// The L7 scenario's results: the proxies under load, and a kernel-path service's short
/// connections with the proxy running.
#[derive(Debug, Clone, Serialize, Default)]
pub struct L7Results {
    pub runs: Vec<L7Run>,
    /// Short connections to a kernel-path service of the same agent (its proxy running and
    /// serving `reviews`), direct, and through an agent started with `--no-proxy`, round by
    /// round.
    pub kernel_path: Vec<KernelPathRun>,
    /// wrk's connections, h2load's clients and streams per client (per process), seconds per
    /// run.
    pub wrk_connections: u32,
    pub h2load_clients: u32,
    pub h2load_streams: u32,
    pub secs: u32,
}

/// The ways a client reaches the kernel-path service.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelPathVariant {
    Direct,
    /// The agent with its proxy running (the L7 variant's agent).
    VsteerProxy,
    /// An agent started with `--no-proxy`.
    VsteerNoProxy,
}

impl KernelPathVariant {
    pub fn label(self) -> &'static str {
        match self {
            KernelPathVariant::Direct => "direct",
            KernelPathVariant::VsteerProxy => "vsteer, proxy running",
            KernelPathVariant::VsteerNoProxy => "vsteer --no-proxy",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelPathRun {
    pub variant: KernelPathVariant,
    pub conns_per_sec: Stat,
    pub p50_us: Stat,
    pub p99_us: Stat,
    pub rounds: Vec<RoundSample>,
    pub vs_direct: RoundRatios,
    /// Per-round ratios to the `--no-proxy` agent.
    pub vs_no_proxy: RoundRatios,
}

impl KernelPathRun {
    pub fn from_rounds(
        variant: KernelPathVariant,
        rounds: Vec<RoundSample>,
        direct: &[RoundSample],
        no_proxy: &[RoundSample],
    ) -> KernelPathRun {
        let stat = |f: fn(&RoundSample) -> f64| Stat::of(&rounds.iter().map(f).collect::<Vec<_>>());
        KernelPathRun {
            variant,
            conns_per_sec: stat(|r| r.conns_per_sec),
            p50_us: stat(|r| r.p50_us),
            p99_us: stat(|r| r.p99_us),
            vs_direct: RoundRatios::between(&rounds, direct),
            vs_no_proxy: RoundRatios::between(&rounds, no_proxy),
            rounds,
        }
    }
}

/// One round's numbers of one variant's short connections.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RoundSample {
    pub conns_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// A variant against a baseline measured in the same rounds: min / median / max of the
/// per-round ratios (variant in round i over baseline in round i).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RoundRatios {
    pub conns_per_sec: Stat,
    pub p50_us: Stat,
    pub p99_us: Stat,
}

impl RoundRatios {
    pub fn between(rounds: &[RoundSample], baseline: &[RoundSample]) -> RoundRatios {
        let pick = |rounds: &[RoundSample], f: fn(&RoundSample) -> f64| -> Vec<f64> {
            rounds.iter().map(f).collect()
        };
        let of = |f: fn(&RoundSample) -> f64| per_round_ratio(&pick(rounds, f), &pick(baseline, f));
        RoundRatios {
            conns_per_sec: of(|r| r.conns_per_sec),
            p50_us: of(|r| r.p50_us),
            p99_us: of(|r| r.p99_us),
        }
    }
}

/// min / median / max of `values[i] / baseline[i]`: both measured in round i, so drift between
/// rounds cancels out of each ratio. Rounds where either side is missing (not finite) or the
/// baseline is not positive are left out; no rounds give NaNs.
pub fn per_round_ratio(values: &[f64], baseline: &[f64]) -> Stat {
    let ratios: Vec<f64> = values
        .iter()
        .zip(baseline)
        .filter(|(v, b)| v.is_finite() && b.is_finite() && **b > 0.0)
        .map(|(v, b)| v / b)
        .collect();
    Stat::of(&ratios)
}

/// Scenario 1: short connections (connect, small request/response, close) from a client
/// pinned to one core, to a VIP with 4 backends, with `services` services configured. Every
/// variant of one service count ran in the same rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectRun {
    pub services: usize,
    pub variant: Variant,
    /// Absolute numbers: min / median / max over the rounds.
    pub conns_per_sec: Stat,
    pub p50_us: Stat,
    pub p99_us: Stat,
    /// Each measured round's numbers, in round order (round i of every variant of this
    /// service count ran back to back).
    pub rounds: Vec<RoundSample>,
    /// Per-round ratios to direct (latencies too: above 1 is slower).
    pub vs_direct: RoundRatios,
}

impl ConnectRun {
    /// From the rounds of `variant` and those of direct at the same service count.
    pub fn from_rounds(
        services: usize,
        variant: Variant,
        rounds: Vec<RoundSample>,
        direct: &[RoundSample],
    ) -> ConnectRun {
        let stat = |f: fn(&RoundSample) -> f64| Stat::of(&rounds.iter().map(f).collect::<Vec<_>>());
        ConnectRun {
            services,
            variant,
            conns_per_sec: stat(|r| r.conns_per_sec),
            p50_us: stat(|r| r.p50_us),
            p99_us: stat(|r| r.p99_us),
            vs_direct: RoundRatios::between(&rounds, direct),
            rounds,
        }
    }
}

/// Scenario 2: bytes/s on one long connection; direct and vsteer ran in the same rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub variant: Variant,
    pub bytes_per_sec: Stat,
    /// Each measured round's bytes/s, in round order.
    pub rounds: Vec<f64>,
    /// Per-round ratios to direct.
    pub vs_direct: Stat,
}

/// Scenario 3a: applying a one-service weight change with `services` services configured.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateCost {
    pub services: usize,
    /// vsteer: writing the diff into the kernel maps (`apply_us`).
    pub vsteer_apply_ms: Stat,
    /// vsteer end to end, settle excluded: from the debounced file event to the kernel maps
    /// written (the agent's `total_us`, or `read_us + compile_us + apply_us` from an agent that
    /// does not log it; `vsteer_reload_from` says which).
    pub vsteer_reload_ms: Stat,
    /// Which log fields `vsteer_reload_ms` comes from: `total_us`,
    /// `read_us+compile_us+apply_us`, or `mixed`.
    pub vsteer_reload_from: String,
    /// vsteer: the debounce, from the first file event to the delivery (`settle_ms`); NaN
    /// (null) when the agent does not log it.
    pub vsteer_settle_ms: Stat,
    /// kube-proxy style: `iptables-restore` of the whole ruleset.
    pub iptables_restore_ms: Stat,
}

/// Scenario 3b: compiling and loading `virtual_services` VirtualServices from YAML.
#[derive(Debug, Clone, Serialize)]
pub struct LoadCost {
    pub virtual_services: usize,
    /// From `vsteer run` started to its datapath ready.
    pub load_ms: Stat,
    /// Peak resident set of the agent (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

/// Scenario 3c: the agent's memory with `services` services (each a ServiceEntry, a
/// VirtualService and a DestinationRule): when ready, and after `reloads` one-service changes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryAtScale {
    pub services: usize,
    pub reloads: usize,
    /// VmRSS and VmHWM (peak) of the agent, KiB, over the repetitions.
    pub ready_rss_kib: Stat,
    pub ready_hwm_kib: Stat,
    pub after_rss_kib: Stat,
    pub after_hwm_kib: Stat,
    /// Each repetition (a fresh agent) in order.
    pub runs: Vec<MemorySample>,
}

/// Scenario 3d (in the memory run): the command-line tools on the same `services` services
/// (`endpoints` endpoints in all), release build: `vsteer plan --config DIR` (read and compile
/// everything, print the table) and `vsteer status` (read every pinned map, print the
/// shares), wall time and peak RSS (`ru_maxrss`), once per repetition.
#[derive(Debug, Clone, Serialize)]
pub struct CliAtScale {
    pub services: usize,
    pub endpoints: usize,
    pub plan_ms: Stat,
    pub plan_peak_kib: Stat,
    pub status_ms: Stat,
    pub status_peak_kib: Stat,
}

/// One agent's memory, KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct MemorySample {
    pub ready_rss_kib: u64,
    pub ready_hwm_kib: u64,
    pub after_rss_kib: u64,
    pub after_hwm_kib: u64,
}

impl MemoryAtScale {
    pub fn from_runs(services: usize, reloads: usize, runs: Vec<MemorySample>) -> MemoryAtScale {
        let stat = |f: fn(&MemorySample) -> u64| {
            Stat::of(&runs.iter().map(|r| f(r) as f64).collect::<Vec<_>>())
        };
        MemoryAtScale {
            services,
            reloads,
            ready_rss_kib: stat(|r| r.ready_rss_kib),
            ready_hwm_kib: stat(|r| r.ready_hwm_kib),
            after_rss_kib: stat(|r| r.after_rss_kib),
            after_hwm_kib: stat(|r| r.after_hwm_kib),
            runs,
        }
    }
}

/// Scenario 6: Kubernetes mode with `services` Services (each an EndpointSlice of two
/// endpoints, and their pods) at the test API server: EndpointSlice changes at a steady pace.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesSync {
    pub services: usize,
    pub pods: usize,
    pub changes: usize,
    /// The pace the changes ran at.
    pub changes_per_sec: f64,
    /// From `vsteer run` started to its datapath ready (every kind listed, compiled, written).
    pub ready_ms: f64,
    /// From an EndpointSlice changed at the API server to the agent's "config applied" (maps
    /// written), debounce included.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// The agent's VmRSS when ready, its largest while the changes ran, and its VmHWM, KiB.
    pub ready_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub hwm_kib: u64,
    /// The agent's CPU while the changes ran, in cores.
    pub cpu_cores: f64,
    /// kube-proxy style: `iptables-restore` of the whole ruleset for the same services.
    pub iptables_restore_ms: Stat,
}

/// Scenario 4: the kernel's own statistics (`kernel.bpf_stats_enabled`) for one program.
#[derive(Debug, Clone, Serialize)]
pub struct KernelCost {
    pub program: String,
    pub calls: u64,
    pub ns_per_call: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub connect: Vec<ConnectRun>,
    pub throughput: Vec<Throughput>,
    pub update: Vec<UpdateCost>,
    pub load: Vec<LoadCost>,
    pub memory: Vec<MemoryAtScale>,
    pub cli: Vec<CliAtScale>,
    pub kernel: Vec<KernelCost>,
    pub l7: L7Results,
    pub kubernetes: Vec<KubernetesSync>,
    /// Anything the reader must know: skipped variants, why a number is missing.
    pub notes: Vec<String>,
}

impl Results {
    /// The connect run of `variant` at `services`, if measured.
    pub fn connect_run(&self, services: usize, variant: Variant) -> Option<&ConnectRun> {
        self.connect
            .iter()
            .find(|run| run.services == services && run.variant == variant)
    }

    /// `variant` over `baseline` at `services`, round by round; None when either is missing.
    pub fn connect_ratios(
        &self,
        services: usize,
        variant: Variant,
        baseline: Variant,
    ) -> Option<RoundRatios> {
        let run = self.connect_run(services, variant)?;
        let base = self.connect_run(services, baseline)?;
        Some(RoundRatios::between(&run.rounds, &base.rounds))
    }

    /// The L7 run of `variant` under `load`, if measured.
    pub fn l7_run(&self, load: L7Load, variant: L7Variant) -> Option<&L7Run> {
        self.l7
            .runs
            .iter()
            .find(|run| run.load == load && run.variant == variant)
    }

    /// The kernel-path run of `variant`, if measured.
    pub fn kernel_path_run(&self, variant: KernelPathVariant) -> Option<&KernelPathRun> {
        self.l7
            .kernel_path
            .iter()
            .find(|run| run.variant == variant)
    }

    /// Throughput of `variant` over direct's, round by round; None when either is missing.
    pub fn throughput_ratio(&self, variant: Variant) -> Option<Stat> {
        let find = |v: Variant| self.throughput.iter().find(|run| run.variant == v);
        Some(per_round_ratio(
            &find(variant)?.rounds,
            &find(Variant::Direct)?.rounds,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(conns_per_sec: f64) -> RoundSample {
        RoundSample {
            conns_per_sec,
            p50_us: 1e6 / conns_per_sec,
            p99_us: 2e6 / conns_per_sec,
        }
    }

    /// The machine's speed at run slot `t`: another job starts halfway through and takes a
    /// quarter of the client's core.
    fn speed(t: usize) -> f64 {
        if t < 5 { 24_000.0 } else { 18_000.0 }
    }

    #[test]
    fn per_round_ratios_see_through_drift_that_block_medians_turn_into_a_gap() {
        // vsteer is truly 0.98x direct. Ten run slots, five per variant.
        const TRUE: f64 = 0.98;
        // Blocks: direct in slots 0-4, vsteer in slots 5-9.
        let direct_block: Vec<f64> = (0..5).map(speed).collect();
        let vsteer_block: Vec<f64> = (5..10).map(|t| speed(t) * TRUE).collect();
        let block = Stat::of(&vsteer_block).median / Stat::of(&direct_block).median;
        assert!((block - 0.735).abs() < 1e-9, "a fake 26% gap: {block}");

        // Rounds: direct in slot 2i, vsteer in slot 2i + 1.
        let direct: Vec<RoundSample> = (0..5).map(|i| round(speed(2 * i))).collect();
        let vsteer: Vec<RoundSample> = (0..5).map(|i| round(speed(2 * i + 1) * TRUE)).collect();
        let run = ConnectRun::from_rounds(1, Variant::Vsteer, vsteer.clone(), &direct);
        let r = run.vs_direct.conns_per_sec;
        // Only round 2 straddles the step: it shows in the spread, not in the median.
        assert!((r.median - TRUE).abs() < 1e-12, "{r:?}");
        assert!((r.max - TRUE).abs() < 1e-12, "{r:?}");
        assert!((r.min - 0.735).abs() < 1e-9, "{r:?}");
        // Latency ratios are round by round too: above 1 is slower.
        assert!((run.vs_direct.p50_us.median - 1.0 / TRUE).abs() < 1e-12);
        // The absolute numbers keep the drift, and the rounds are kept in order.
        assert_eq!(run.conns_per_sec.min, 18_000.0 * TRUE);
        assert_eq!(run.conns_per_sec.max, 24_000.0 * TRUE);
        assert_eq!(run.rounds, vsteer);
    }

    #[test]
    fn per_round_ratio_spread_and_missing_rounds() {
        let r = per_round_ratio(
            &[10.0, 9.0, 12.0, f64::NAN, 5.0],
            &[10.0, 10.0, 10.0, 10.0, 0.0],
        );
        assert_eq!((r.min, r.median, r.max), (0.9, 1.0, 1.2));
        // Fewer baseline rounds: only the paired ones count.
        let r = per_round_ratio(&[2.0, 4.0, 8.0], &[1.0]);
        assert_eq!((r.min, r.median, r.max), (2.0, 2.0, 2.0));
        assert!(per_round_ratio(&[], &[]).median.is_nan());
    }

    #[test]
    fn l7_runs_pair_rounds_with_direct_and_nginx() {
        let sample = |rps: f64, p99: f64, cores: f64, rss: u64| L7Sample {
            requests_per_sec: rps,
            p50_us: p99 / 2.0,
            p99_us: p99,
            requests: rps as u64 * 5,
            proxy_cores: cores,
            proxy_rss_kib: rss,
            proxy_hwm_kib: rss * 2,
            proxy_idle_rss_kib: rss / 2,
            backend_cores: 0.2,
        };
        // The machine is twice as fast in round 1.
        let direct = [
            sample(100e3, 300.0, f64::NAN, 0),
            sample(200e3, 150.0, f64::NAN, 0),
        ];
        let nginx = [
            sample(40e3, 2000.0, 1.0, 8000),
            sample(80e3, 1000.0, 1.0, 8000),
        ];
        let vsteer = vec![
            sample(44e3, 1800.0, 0.99, 22_000),
            sample(88e3, 900.0, 1.0, 22_000),
        ];
        let run = L7Run::from_rounds(L7Load::Http1, L7Variant::Vsteer, vsteer, &direct, &nginx);
        let r = run.vs_nginx.conns_per_sec;
        assert!(
            (r.min - 1.1).abs() < 1e-12 && (r.max - 1.1).abs() < 1e-12,
            "{r:?}"
        );
        assert!((run.vs_nginx.p99_us.median - 0.9).abs() < 1e-12);
        assert!((run.vs_direct.conns_per_sec.median - 0.44).abs() < 1e-12);
        // 1,800 - 300 and 900 - 150: the lower median of two.
        assert_eq!(run.added_p99_us.median, 750.0);
        assert_eq!(run.added_p99_us.max, 1500.0);
        // 0.99 cores at 44,000 req/s: 2.25% of a core per 1,000 req/s; 22,000 KiB / 44.
        assert!((run.cpu_percent_per_krps.max - 2.25).abs() < 1e-12);
        assert!((run.rss_kib_per_krps.max - 500.0).abs() < 1e-12);
        assert_eq!(run.proxy_hwm_kib.median, 44_000.0);
        // Direct has no proxy: NaN (null), not 0.
        let d = L7Run::from_rounds(
            L7Load::Http1,
            L7Variant::Direct,
            direct.to_vec(),
            &direct,
            &nginx,
        );
        assert!(d.proxy_cores.median.is_nan() && d.proxy_rss_kib.median.is_nan());
        assert!(d.cpu_percent_per_krps.median.is_nan() && d.rss_kib_per_krps.median.is_nan());
        assert_eq!(d.added_p50_us.median, 0.0);
    }

    #[test]
    fn results_pair_variants_by_round() {
        let direct: Vec<RoundSample> = [100.0, 200.0, 100.0].map(round).to_vec();
        let vsteer: Vec<RoundSample> = [99.0, 198.0, 99.0].map(round).to_vec();
        let iptables: Vec<RoundSample> = [50.0, 100.0, 25.0].map(round).to_vec();
        let results = Results {
            machine: Machine {
                cores: 2,
                cpu: String::new(),
                kernel: String::new(),
                date: String::new(),
                command: String::new(),
                repeats: 3,
            },
            connect: vec![
                ConnectRun::from_rounds(1, Variant::Direct, direct.clone(), &direct),
                ConnectRun::from_rounds(1, Variant::Vsteer, vsteer, &direct),
                ConnectRun::from_rounds(1, Variant::Iptables, iptables, &direct),
            ],
            throughput: vec![],
            update: vec![],
            load: vec![],
            memory: vec![],
            cli: vec![],
            kernel: vec![],
            l7: L7Results::default(),
            kubernetes: Vec::new(),
            notes: vec![],
        };
        let direct = results.connect_run(1, Variant::Direct).map(|r| r.vs_direct);
        assert_eq!(direct.map(|r| r.conns_per_sec.median), Some(1.0));
        let vs_iptables = results
            .connect_ratios(1, Variant::Vsteer, Variant::Iptables)
            .map(|r| r.conns_per_sec);
        // 99/50, 198/100, 99/25.
        assert_eq!(
            vs_iptables.map(|r| (r.min, r.median, r.max)),
            Some((1.98, 1.98, 3.96))
        );
        assert!(
            results
                .connect_ratios(30, Variant::Vsteer, Variant::Direct)
                .is_none()
        );
        assert!(results.throughput_ratio(Variant::Vsteer).is_none());
    }
}
