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

/// Scenario 1: short connections (connect, small request/response, close) from a client
/// pinned to one core, to a VIP with 4 backends, with `services` services configured.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectRun {
    pub services: usize,
    pub variant: Variant,
    pub conns_per_sec: Stat,
    pub p50_us: Stat,
    pub p99_us: Stat,
}

/// Scenario 2: bytes/s on one long connection.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub variant: Variant,
    pub bytes_per_sec: Stat,
}

/// Scenario 3a: applying a one-service weight change with `services` services configured.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateCost {
    pub services: usize,
    /// vsteer: writing the diff into the kernel maps.
    pub vsteer_apply_ms: Stat,
    /// vsteer: from the config file written to the change applied (read, compile, apply).
    pub vsteer_reload_ms: Stat,
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
    pub kernel: Vec<KernelCost>,
    /// Anything the reader must know: skipped variants, why a number is missing.
    pub notes: Vec<String>,
}
