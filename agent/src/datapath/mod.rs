//! The kernel side of the agent: load the programs, attach them to a cgroup, pin the maps and
//! keep them in step with the plan.
mod entries;
mod logs;
mod mounts;
mod object;
mod tables;

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::HashMap,
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use vsteer_common::map_names;

pub use entries::{desired, service_key};
pub use mounts::cgroup2_root;
pub use object::CONNECT4;
pub use tables::ApplyStats;

use crate::compiler::Plan;

/// Default bpffs directory for vsteer's pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/vsteer";

/// Node-global places the datapath uses; all configurable so tests can run side by side.
#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// cgroup v2 directory whose sockets are steered; `None` means the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    /// bpffs directory where the maps are pinned.
    pub pin_dir: PathBuf,
}

/// The loaded, attached programs and their maps. Dropping it detaches the programs.
pub struct Datapath {
    // Holds the programs and their cgroup links: dropping it detaches them.
    _ebpf: Ebpf,
    tables: tables::Tables,
    pinned: Vec<PathBuf>,
    cgroup: PathBuf,
    _logs: Option<tokio::task::JoinHandle<()>>,
}

impl Datapath {
    /// Loads the embedded programs, attaches them and pins the maps. Needs root (CAP_BPF,
    /// CAP_NET_ADMIN, CAP_SYS_ADMIN for the bpffs mount).
    pub fn start(options: &DatapathOptions) -> Result<Self> {
        let cgroup = match &options.cgroup {
            Some(path) => path.clone(),
            None => cgroup2_root()?,
        };
        mounts::ensure_bpffs(&options.pin_dir)?;
        let level = logs::kernel_level();
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, true)
            .load(object::EBPF_OBJECT)
            .context("loading vsteer's eBPF object into the kernel")?;
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
        attach_connect4(&mut ebpf, &cgroup)?;
        let pinned = pin_maps(&ebpf, &options.pin_dir)?;
        let services = take_hash_map(&mut ebpf, map_names::SERVICES)?;
        let backends = take_hash_map(&mut ebpf, map_names::BACKENDS)?;
        Ok(Self {
            _ebpf: ebpf,
            tables: tables::Tables::new(services, backends),
            pinned,
            cgroup,
            _logs: logs,
        })
    }

    /// The cgroup the programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Brings the kernel's maps in line with `plan`, writing only what changed.
    pub fn apply(&mut self, plan: &Plan) -> Result<ApplyStats> {
        self.tables.apply(&desired(plan))
    }

    /// Frees backend tables replaced more than a grace period ago.
    pub fn sweep(&mut self) -> Result<()> {
        self.tables.sweep()
    }

    /// Detaches the programs and removes the pins.
    pub fn shutdown(self) {
        for pin in &self.pinned {
            if let Err(err) = std::fs::remove_file(pin) {
                tracing::warn!(pin = %pin.display(), "removing pin: {err}");
            }
        }
        if let Some(dir) = self.pinned.first().and_then(|p| p.parent()) {
            // Only removes the directory when nothing else was pinned there.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn attach_connect4(ebpf: &mut Ebpf, cgroup: &Path) -> Result<()> {
    let program: &mut CgroupSockAddr = ebpf
        .program_mut(CONNECT4)
        .with_context(|| format!("program {CONNECT4} is missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {CONNECT4} is not a cgroup_sock_addr program"))?;
    program
        .load()
        .with_context(|| format!("loading {CONNECT4} (rejected by the verifier?)"))?;
    let dir = File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    // On kernels with BPF links (5.7+) aya attaches through bpf_link_create, whose links always
    // coexist with other programs on the cgroup (a CNI, systemd) and which takes no flags:
    // `Single` is what passes flags 0.
    program
        .attach(&dir, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {CONNECT4} to cgroup {}", cgroup.display()))?;
    Ok(())
}

/// Pins the steering maps under `pin_dir` so `bpftool map dump pinned` can read them. A pin
/// left by an agent that did not shut down cleanly is replaced.
fn pin_maps(ebpf: &Ebpf, pin_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut pinned = Vec::new();
    for name in [map_names::SERVICES, map_names::BACKENDS] {
        let path = pin_dir.join(name);
        if path.exists() {
            tracing::warn!(pin = %path.display(), "replacing a stale pin");
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale pin {}", path.display()))?;
        }
        ebpf.map(name)
            .with_context(|| format!("map {name} is missing from the eBPF object"))?
            .pin(&path)
            .with_context(|| format!("pinning map {name} at {}", path.display()))?;
        pinned.push(path);
    }
    Ok(pinned)
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
