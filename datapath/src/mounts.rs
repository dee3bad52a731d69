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

/// `CGROUP2_SUPER_MAGIC` of `statfs(2)`.
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// Fails unless `path` is a directory of a cgroup v2 hierarchy, with a message that says so
/// (checked before anything is pinned or attached).
pub fn check_cgroup2(path: &Path) -> Result<()> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("--cgroup {}: no such cgroup", path.display()))?;
    if !metadata.is_dir() {
        anyhow::bail!(
            "--cgroup {}: not a directory, let alone a cgroup v2 one",
            path.display()
        );
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("--cgroup {}: the path holds a NUL byte", path.display()))?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statfs buffer of the right size.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("--cgroup {}: statfs", path.display()));
    }
    #[allow(clippy::unnecessary_cast)]
    if stat.f_type as i64 != CGROUP2_MAGIC {
        let roots = mountinfo::mount_points("cgroup2").unwrap_or_default();
        anyhow::bail!(
            "--cgroup {}: not a cgroup v2 directory (cgroup v2 is mounted at {}); pass a \
             directory of that hierarchy, or leave --cgroup out to steer the whole node",
            path.display(),
            if roots.is_empty() {
                "no place on this node".to_string()
            } else {
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    Ok(())
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
