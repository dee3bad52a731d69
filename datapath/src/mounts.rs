//! The node-global places the datapath uses: the cgroup v2 hierarchy and the BPF filesystem.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};
use vsteer_common::mountinfo;

/// The root of the cgroup v2 hierarchy, wherever this node mounts it.
pub fn cgroup2_root() -> Result<PathBuf> {
    mountinfo::mount_points("cgroup2")
        .context("reading /proc/self/mountinfo")?
        .into_iter()
        .next()
        .context("no cgroup v2 filesystem is mounted (vsteer needs cgroup v2)")
}

/// Makes sure `pin_dir` lies on a BPF filesystem: mounts one on its parent when none covers it,
/// then creates `pin_dir`.
pub fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    let parent = pin_dir
        .parent()
        .with_context(|| format!("pin directory {} has no parent", pin_dir.display()))?;
    let mounts = mountinfo::mount_points("bpf").context("reading /proc/self/mountinfo")?;
    if !mounts.iter().any(|m| pin_dir.starts_with(m)) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        mount_bpffs(parent)?;
        tracing::info!(path = %parent.display(), "mounted a BPF filesystem");
    }
    std::fs::create_dir_all(pin_dir)
        .with_context(|| format!("creating pin directory {}", pin_dir.display()))
}

fn mount_bpffs(at: &Path) -> Result<()> {
    mount(Some("bpf"), at, Some("bpf"), MsFlags::empty(), None::<&str>)
        .with_context(|| format!("mounting bpffs on {}", at.display()))
}
