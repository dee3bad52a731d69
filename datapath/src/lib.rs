//! The plan in the kernel: load vsteer's programs (built from `ebpf/` by this crate's build
//! script), attach them to a cgroup, pin them and their maps (`pins`), and keep the maps in
//! step with the plan (`tables`, `slots`, `ranges`); read them back for `vsteer status`.
//!
//! Everything is pinned under the pin directory (maps at its top, programs under `programs/`,
//! links under `links/`), so the datapath
//! outlives the agent: traffic keeps flowing on the last config while no agent runs, and a
//! new agent adopts the pinned maps and swaps in its programs without a gap.
//!
//! The L7 path (`proxy`, `original`): services the compiler gives to the proxy are flagged in
//! the service map; the connect hooks send them to the proxy named by `set_proxy` (a map of
//! the running agent's own, not pinned), and the proxy reads each accepted connection's
//! original destination through `OriginalDestinations` (a pinned map, so connections made
//! under one agent keep theirs under the next).
mod counters;
mod grace;
mod keys;
mod layout;
mod logs;
mod mounts;
mod object;
mod original;
mod owner;
mod pins;
mod proxy;
mod ranges;
mod raw_link;
mod service_maps;
mod slots;
pub mod status;
mod tables;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, PerCpuHashMap},
};
use vsteer_common::{Address, OriginalKey, ProxyConfig, map_names};
use vsteer_plan::{Plan, ServiceKey};

pub use keys::{address, describe, service_key, vip_key};
pub use mounts::{cgroup2_root, check_cgroup2};
pub use object::{CONNECT4, GETSOCKOPT, PROGRAMS, SOCKOPS};
pub use original::OriginalDestinations;
pub use owner::{Claim, PinDirOwner, holder_name};
pub use pins::{pins_present, uninstall};
pub use proxy::ProxyRedirect;
pub use slots::{TableSpec, shares, table_spec};
pub use tables::{ApplyStats, Refused};

use pins::{LINKS_DIR, PROGRAMS_DIR, attach_and_pin};

/// Default bpffs directory for vsteer's pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/vsteer";

/// Node-global places the datapath uses; all configurable so tests can run side by side.
#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// cgroup v2 directory whose sockets are steered; `None` means the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    /// bpffs directory where the maps and links are pinned.
    pub pin_dir: PathBuf,
    /// Where proxied services' connects go (`None`: nowhere, they get their L4 table). Give
    /// it once the proxy listens, or call [`Datapath::set_proxy`] then.
    pub proxy: Option<ProxyRedirect>,
}

/// The loaded, attached programs and their maps.
pub struct Datapath {
    // Keeps the programs' log ring buffer and map handles alive.
    _ebpf: Ebpf,
    tables: tables::Tables,
    counters: counters::Counters,
    proxy: HashMap<aya::maps::MapData, u32, ProxyConfig>,
    original: OriginalDestinations,
    /// The network namespace `start` ran in: where a loopback proxy address reaches the
    /// proxy.
    netns_cookie: u64,
    cgroup: PathBuf,
    adopted: usize,
    _logs: Option<tokio::task::JoinHandle<()>>,
}

impl Datapath {
    /// Loads the embedded programs (reusing maps pinned by an earlier agent), attaches them,
    /// and pins links and maps. Needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.
    ///
    /// The calling thread's network namespace is taken as the agent's: a loopback proxy
    /// address is used only for sockets of that namespace.
    pub fn start(options: &DatapathOptions) -> Result<Self> {
        if object::EBPF_OBJECT.is_empty() {
            bail!(
                "this vsteer was built without its kernel programs (bpf-linker was missing at \
                 build time): build it with `cargo xtask build`"
            );
        }
        check_privileges()?;
        let cgroup = match &options.cgroup {
            Some(path) => {
                // Before anything is pinned: a wrong path leaves nothing behind.
                check_cgroup2(path)?;
                path.clone()
            }
            None => cgroup2_root()?,
        };
        let pin_dir = &options.pin_dir;
        mounts::ensure_bpffs(pin_dir)?;
        // Before a pinned map is opened: another layout's maps would be misread.
        let checked = layout::check(pin_dir)?;
        for dir in [LINKS_DIR, PROGRAMS_DIR] {
            let dir = pin_dir.join(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }

        let level = logs::kernel_level();
        let pins: Vec<(&str, PathBuf)> = map_names::PINNED
            .iter()
            .map(|name| (*name, pin_dir.join(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &level, true);
        for (name, path) in &pins {
            // Opens the pinned map when it exists (an earlier agent's state), else creates
            // and pins it.
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object::EBPF_OBJECT).with_context(|| {
            format!(
                "loading vsteer's eBPF object (maps in {})",
                pin_dir.display()
            )
        })?;
        checked.mark(pin_dir)?;
        // Log forwarding needs a tokio runtime; a library user without one goes without.
        let logs = match tokio::runtime::Handle::try_current() {
            Err(_) => None,
            Ok(_) => match logs::forward(&mut ebpf) {
                Ok(task) => Some(task),
                Err(err) => {
                    tracing::warn!("kernel program logs unavailable: {err:#}");
                    None
                }
            },
        };
        let netns_cookie = proxy::own_netns_cookie()?;
        let mut proxy = take_hash_map(&mut ebpf, map_names::PROXY)?;
        // Before the programs are attached: the new ones redirect as told from their start.
        write_proxy(&mut proxy, options.proxy.as_ref(), netns_cookie)?;
        let original = OriginalDestinations::new(take_hash_map::<OriginalKey, Address>(
            &mut ebpf,
            map_names::ORIGINAL,
        )?);
        let exact = take_hash_map(&mut ebpf, map_names::SERVICES)?;
        let ranges = ebpf
            .take_map(map_names::RANGES)
            .context("map VSTEER_RANGES is missing from the eBPF object")?;
        let ranges = aya::maps::LpmTrie::try_from(ranges)
            .context("map VSTEER_RANGES has an unexpected type or layout")?;
        let entries = ebpf
            .take_map(map_names::ENTRIES)
            .context("map VSTEER_ENTRIES is missing from the eBPF object")?;
        let entries = Array::try_from(entries)
            .context("map VSTEER_ENTRIES has an unexpected type or layout")?;
        let services = service_maps::ServiceMaps::new(exact, entries, ranges)?;
        for name in PROGRAMS {
            attach_and_pin(&mut ebpf, name, &cgroup, pin_dir)?;
        }
        let slots = ebpf
            .take_map(map_names::BACKENDS)
            .context("map VSTEER_BACKENDS is missing from the eBPF object")?;
        let slots = Array::try_from(slots)
            .context("map VSTEER_BACKENDS has an unexpected type or layout")?;
        let tables = tables::Tables::adopt(services, slots, grace::Grace::take(&mut ebpf)?)?;
        let adopted = tables.installed().len();
        let counters = ebpf
            .take_map(map_names::COUNTERS)
            .context("map VSTEER_COUNTERS is missing from the eBPF object")?;
        let counters = counters::Counters::new(
            PerCpuHashMap::try_from(counters)
                .context("map VSTEER_COUNTERS has an unexpected type or layout")?,
        );
        Ok(Self {
            _ebpf: ebpf,
            tables,
            counters,
            proxy,
            original,
            netns_cookie,
            cgroup,
            adopted,
            _logs: logs,
        })
    }

    /// The cgroup the programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// How many services were found in the pinned maps at start (left by an earlier agent).
    pub fn adopted(&self) -> usize {
        self.adopted
    }

    /// Brings the kernel's maps in line with `plan`, writing only what changed.
    pub fn apply(&mut self, plan: &Plan) -> Result<ApplyStats> {
        self.tables.apply(plan)
    }

    /// Brings the services `keys` in line with `plan` (the compiler's list of what changed):
    /// a one-service change costs one service, whatever the number of services.
    pub fn apply_changes(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats> {
        self.tables.apply_keys(plan, keys)
    }

    /// Frees the backend tables replaced so far, once the kernel says no connect reads them.
    pub fn sweep(&mut self) {
        self.tables.sweep()
    }

    /// Deletes the connection counters of backends `plan` no longer has; returns how many.
    pub fn prune_counters(&mut self, plan: &Plan) -> Result<usize> {
        self.counters.prune(plan)
    }

    /// A handle the proxy uses per accepted connection; Send + Sync + Clone.
    pub fn original_destinations(&self) -> Result<OriginalDestinations> {
        Ok(self.original.clone())
    }

    /// Stops (None) or restarts redirecting, e.g. on agent exit so proxied services fall back
    /// to L4 while no proxy runs. Takes effect for the next connect on every CPU.
    pub fn set_proxy(&mut self, proxy: Option<&ProxyRedirect>) -> Result<()> {
        write_proxy(&mut self.proxy, proxy, self.netns_cookie)
    }

    /// The cookie of the network namespace the datapath was started in (SO_NETNS_COOKIE).
    pub fn netns_cookie(&self) -> u64 {
        self.netns_cookie
    }
}

/// The capabilities loading, attaching and pinning need without CAP_SYS_ADMIN, by bit
/// number (measured: without CAP_PERFMON the verifier refuses the connect programs, without
/// CAP_NET_ADMIN the cgroup attach and the proxy's SO_MARK fail).
const NEEDED_CAPS: [(u32, &str); 3] = [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (12, "CAP_NET_ADMIN")];

/// Fails unless this process may load, attach and pin the programs, naming what is missing.
pub fn check_privileges() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .context("no CapEff line in /proc/self/status")?;
    let has = |bit: u32| effective & (1 << bit) != 0;
    let missing: Vec<&str> = NEEDED_CAPS
        .iter()
        .filter(|(bit, _)| !has(*bit))
        .map(|(_, name)| *name)
        .collect();
    // What the kernel (5.8 and later) checks: CAP_SYS_ADMIN stands in for CAP_BPF and
    // CAP_PERFMON, never for CAP_NET_ADMIN's socket options.
    let sys = has(21);
    let allowed = missing.is_empty() || (sys && has(12));
    if !allowed {
        bail!(
            "loading and attaching the kernel programs needs root, or the capabilities CAP_BPF, \
             CAP_PERFMON and CAP_NET_ADMIN (CAP_SYS_ADMIN stands in for the first two); this \
             process lacks {}",
            missing.join(", ")
        );
    }
    Ok(())
}

fn write_proxy(
    map: &mut HashMap<aya::maps::MapData, u32, ProxyConfig>,
    proxy: Option<&ProxyRedirect>,
    netns_cookie: u64,
) -> Result<()> {
    let config = proxy::config(proxy, netns_cookie)?;
    map.insert(0, config, 0)
        .context("writing the proxy redirect (map VSTEER_PROXY)")
}

fn take_hash_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<HashMap<aya::maps::MapData, K, V>> {
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} is missing from the eBPF object"))?;
    HashMap::try_from(map).with_context(|| format!("map {name} has an unexpected type or layout"))
}
