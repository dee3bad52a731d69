//! Pinning: programs under `programs/`, their cgroup links under `links/`, maps at the top
//! of the pin directory, so the datapath outlives the agent; swapping an earlier agent's
//! pins without a gap; and removing them all.

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{CgroupAttachMode, Program, links::FdLink},
};
use vsteer_common::map_names;

use crate::raw_link;

/// Sub-directories of the pin directory holding the program links and the programs.
pub const LINKS_DIR: &str = "links";
pub const PROGRAMS_DIR: &str = "programs";

/// Attaches one program to the cgroup and pins it and its link. The new link is attached
/// before the pin of an earlier agent's link is replaced (by rename), so some program always
/// runs: for that moment both run, and the second finds the first's rewritten address is no
/// VIP (and the sockops and getsockopt programs of both find the same pinned maps).
pub fn attach_and_pin(ebpf: &mut Ebpf, name: &str, cgroup: &Path, pin_dir: &Path) -> Result<()> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} is missing from the eBPF object"))?;
    let dir = File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    // Every kind has the same steps under its own types.
    macro_rules! attach {
        ($program:expr) => {{
            let program = $program;
            program
                .load()
                .with_context(|| format!("loading {name} (rejected by the verifier?)"))?;
            replace_pin(&pin_dir.join(PROGRAMS_DIR).join(name), |fresh| {
                program.pin(fresh).map_err(anyhow::Error::from)
            })
            .with_context(|| format!("pinning program {name}"))?;
            // With BPF links (Linux 5.7+) the attachment coexists with other programs on the
            // cgroup (a CNI, systemd); `Single` is what passes the flags 0 that link_create
            // requires.
            let id = program
                .attach(&dir, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to cgroup {}", cgroup.display()))?;
            FdLink::try_from(program.take_link(id)?).with_context(|| {
                format!("{name}: the kernel has no BPF links (needs Linux 5.7+)")
            })?
        }};
    }
    let link = match program {
        Program::CgroupSockAddr(program) => attach!(program),
        Program::SockOps(program) => attach!(program),
        Program::CgroupSockopt(program) => {
            // aya 0.14 cannot hand out a getsockopt link as an FdLink (to pin it): create
            // and pin that one by hand.
            program
                .load()
                .with_context(|| format!("loading {name} (rejected by the verifier?)"))?;
            replace_pin(&pin_dir.join(PROGRAMS_DIR).join(name), |fresh| {
                program.pin(fresh).map_err(anyhow::Error::from)
            })
            .with_context(|| format!("pinning program {name}"))?;
            let link = raw_link::create(
                program.fd()?.as_fd(),
                dir.as_fd(),
                raw_link::CGROUP_GETSOCKOPT,
            )
            .with_context(|| format!("attaching {name} to cgroup {}", cgroup.display()))?;
            return replace_pin(&pin_dir.join(LINKS_DIR).join(name), |fresh| {
                raw_link::pin(link.as_fd(), fresh)
            })
            .with_context(|| format!("pinning the {name} link"));
        }
        other => anyhow::bail!(
            "program {name} is a {:?} program, not a cgroup socket hook",
            other.prog_type()
        ),
    };
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

/// Whether the datapath's pins are in place (the service map and every program's link):
/// what an agent checks to notice they were removed under it.
pub fn pins_present(pin_dir: &Path) -> bool {
    pin_dir.join(map_names::SERVICES).exists()
        && crate::object::PROGRAMS
            .iter()
            .all(|name| pin_dir.join(LINKS_DIR).join(name).exists())
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
    // The layout marker, whichever layout it names (an uninstall by another version).
    if let Ok(entries) = std::fs::read_dir(pin_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name
                .to_string_lossy()
                .starts_with(crate::layout::MARKER_PREFIX)
                && path.is_dir()
            {
                std::fs::remove_dir(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                removed.push(path);
            }
        }
    }
    if pin_dir.is_dir() {
        // Only removes the directory when nothing else lives there.
        let _ = std::fs::remove_dir(pin_dir);
    }
    Ok(removed)
}
