//! The kernel side of the agent: load the programs, attach them to a cgroup, pin them and
//! their maps, and keep the maps in step with the plan.
//!
//! Everything is pinned under the pin directory (maps at its top, programs under `programs/`,
//! links under `links/`), so the datapath
//! outlives the agent: traffic keeps flowing on the last config while no agent runs, and a
//! new agent adopts the pinned maps and swaps in its programs without a gap.
mod logs;
mod mounts;
mod object;
mod ranges;
mod slots;
pub mod status;
mod tables;

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap},
    programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink},
};
use vsteer_common::map_names;

pub use mounts::cgroup2_root;
pub use object::{CONNECT4, PROGRAMS};
pub use slots::{TableSpec, address, service_key, shares, table_spec};
pub use tables::{ApplyStats, describe};

use crate::compiler::Plan;

/// Default bpffs directory for vsteer's pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/vsteer";
/// Sub-directories of the pin directory holding the program links and the programs.
const LINKS_DIR: &str = "links";
const PROGRAMS_DIR: &str = "programs";

/// Node-global places the datapath uses; all configurable so tests can run side by side.
#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// cgroup v2 directory whose sockets are steered; `None` means the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    /// bpffs directory where the maps and links are pinned.
    pub pin_dir: PathBuf,
}

/// The loaded, attached programs and their maps.
pub struct Datapath {
    // Keeps the programs' log ring buffer and map handles alive.
    _ebpf: Ebpf,
    tables: tables::Tables,
    cgroup: PathBuf,
    adopted: usize,
    _logs: Option<tokio::task::JoinHandle<()>>,
}

impl Datapath {
    /// Loads the embedded programs (reusing maps pinned by an earlier agent), attaches them,
    /// and pins links and maps. Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN).
    pub fn start(options: &DatapathOptions) -> Result<Self> {
        let cgroup = match &options.cgroup {
            Some(path) => path.clone(),
            None => cgroup2_root()?,
        };
        let pin_dir = &options.pin_dir;
        mounts::ensure_bpffs(pin_dir)?;
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
        for name in PROGRAMS {
            attach_and_pin(&mut ebpf, name, &cgroup, pin_dir)?;
        }
        let services = take_hash_map(&mut ebpf, map_names::SERVICES)?;
        let slots = ebpf
            .take_map(map_names::BACKENDS)
            .context("map VSTEER_BACKENDS is missing from the eBPF object")?;
        let slots = Array::try_from(slots)
            .context("map VSTEER_BACKENDS has an unexpected type or layout")?;
        let tables = tables::Tables::adopt(services, slots)?;
        let adopted = tables.installed().len();
        Ok(Self {
            _ebpf: ebpf,
            tables,
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

    /// Frees backend tables replaced more than a grace period ago.
    pub fn sweep(&mut self) {
        self.tables.sweep()
    }
}

/// Attaches one program to the cgroup and pins it and its link. The new link is attached
/// before the pin of an earlier agent's link is replaced (by rename), so some program always
/// runs: for that moment both run, and the second finds the first's rewritten address is no
/// VIP.
fn attach_and_pin(ebpf: &mut Ebpf, name: &str, cgroup: &Path, pin_dir: &Path) -> Result<()> {
    let program: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} is missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {name} is not a cgroup_sock_addr program"))?;
    program
        .load()
        .with_context(|| format!("loading {name} (rejected by the verifier?)"))?;
    replace_pin(&pin_dir.join(PROGRAMS_DIR).join(name), |fresh| {
        program.pin(fresh).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("pinning program {name}"))?;
    let dir = File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    // With BPF links (Linux 5.7+) the attachment coexists with other programs on the cgroup
    // (a CNI, systemd); `Single` is what passes the flags 0 that link_create requires.
    let id = program
        .attach(&dir, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {name} to cgroup {}", cgroup.display()))?;
    let link = FdLink::try_from(program.take_link(id)?)
        .with_context(|| format!("{name}: the kernel has no BPF links (needs Linux 5.7+)"))?;
    // The pin alone holds the link from now on: the returned handle may go.
    replace_pin(&pin_dir.join(LINKS_DIR).join(name), |fresh| {
        link.pin(fresh).map(drop).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("pinning the {name} link"))
}

/// Pins through `pin` at `<path>_new`, then renames over `path`: the old object stays pinned
/// until the new one is in place. (bpffs refuses names with a dot.)
fn replace_pin(path: &Path, pin: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut fresh = path.as_os_str().to_owned();
    fresh.push("_new");
    let fresh = PathBuf::from(fresh);
    let _ = std::fs::remove_file(&fresh);
    pin(&fresh)?;
    std::fs::rename(&fresh, path).with_context(|| format!("replacing {}", path.display()))
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

/// Removes everything vsteer pinned under `pin_dir`: the links (which detaches the programs)
/// and the maps. Returns what was removed.
pub fn uninstall(pin_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for sub in [LINKS_DIR, PROGRAMS_DIR] {
        let dir = pin_dir.join(sub);
        if !dir.is_dir() {
            continue;
        }
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed.push(path);
        }
        std::fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for name in map_names::PINNED {
        let path = pin_dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed.push(path);
        }
    }
    if pin_dir.is_dir() {
        // Only removes the directory when nothing else lives there.
        let _ = std::fs::remove_dir(pin_dir);
    }
    Ok(removed)
}
