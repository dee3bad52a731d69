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
            Variant::Iptables => "iptables DNAT",
            Variant::Haproxy => "haproxy (TCP)",
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
    pub kernel: Vec<KernelCost>,
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
            kernel: vec![],
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
