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

/// The one place vsteer mounts a BPF filesystem itself, the kernel's conventional one.
/// Anywhere else a mount would hide what the directory holds (`--pin-dir /var/run/vsteer`
/// once mounted bpffs over `/var/run`).
pub const BPFFS_HOME: &str = "/sys/fs/bpf";

/// What [`ensure_bpffs`] does for a pin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BpffsAction {
    /// The pin directory lies on a bpffs.
    Ready,
    /// It lies under [`BPFFS_HOME`], where nothing is mounted: mount bpffs there.
    MountHome,
    /// Neither: the error says why and what to do.
    Refuse(String),
}

/// Decides from the mount table (mount point, type; in mount order) alone.
fn bpffs_action(pin_dir: &Path, mounts: &[(PathBuf, String)]) -> BpffsAction {
    // The filesystem a path is on: the deepest mount point above it, the latest of equals
    // (a later mount on the same point hides the earlier).
    let on = mounts
        .iter()
        .filter(|(point, _)| pin_dir.starts_with(point))
        .max_by_key(|(point, _)| point.components().count());
    if let Some((_, fstype)) = on
        && fstype == "bpf"
    {
        return BpffsAction::Ready;
    }
    let home = Path::new(BPFFS_HOME);
    let home_mounted = mounts.iter().any(|(point, _)| point == home);
    if pin_dir.starts_with(home) && !home_mounted {
        return BpffsAction::MountHome;
    }
    let bpffs: Vec<String> = mounts
        .iter()
        .filter(|(_, fstype)| fstype == "bpf")
        .map(|(point, _)| point.display().to_string())
        .collect();
    let found = on.map_or_else(String::new, |(point, fstype)| {
        format!(" (it is on {fstype} mounted at {})", point.display())
    });
    let mounted = if bpffs.is_empty() {
        "no bpffs is mounted".to_string()
    } else {
        format!("bpffs is mounted at {}", bpffs.join(", "))
    };
    BpffsAction::Refuse(format!(
        "--pin-dir {}: not on a BPF filesystem{found}; {mounted}. vsteer mounts bpffs itself \
         only on {BPFFS_HOME}, when nothing is mounted there: pass a --pin-dir under a bpffs \
         mount, or mount one first (`mount -t bpf bpf DIR`)",
        pin_dir.display()
    ))
}

/// Makes sure `pin_dir` lies on a BPF filesystem, then creates it. Mounts bpffs only on
/// [`BPFFS_HOME`], only when nothing is mounted there and it is empty.
pub fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    let mounts = mountinfo::mounts().context("reading /proc/self/mountinfo")?;
    match bpffs_action(pin_dir, &mounts) {
        BpffsAction::Ready => {}
        BpffsAction::MountHome => {
            let home = Path::new(BPFFS_HOME);
            let empty = std::fs::read_dir(home)
                .with_context(|| format!("reading {BPFFS_HOME} before mounting bpffs on it"))?
                .next()
                .is_none();
            if !empty {
                anyhow::bail!(
                    "{BPFFS_HOME} is not a mount point and holds files: vsteer will not mount \
                     bpffs over them; mount it yourself (`mount -t bpf bpf {BPFFS_HOME}`)"
                );
            }
            mount_bpffs(home)?;
            tracing::info!(path = BPFFS_HOME, "mounted a BPF filesystem");
        }
        BpffsAction::Refuse(message) => anyhow::bail!(message),
    }
    std::fs::create_dir_all(pin_dir)
        .with_context(|| format!("creating pin directory {}", pin_dir.display()))
}

fn mount_bpffs(at: &Path) -> Result<()> {
    mount(Some("bpf"), at, Some("bpf"), MsFlags::empty(), None::<&str>)
        .with_context(|| format!("mounting bpffs on {}", at.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(mounts: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        mounts
            .iter()
            .map(|(point, fstype)| (PathBuf::from(point), fstype.to_string()))
            .collect()
    }

    fn action(pin_dir: &str, mounts: &[(&str, &str)]) -> BpffsAction {
        bpffs_action(Path::new(pin_dir), &table(mounts))
    }

    #[test]
    fn bpffs_is_mounted_only_on_its_home_and_only_where_nothing_is() {
        let node = [("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/bpf", "bpf")];
        assert_eq!(action("/sys/fs/bpf/vsteer", &node), BpffsAction::Ready);
        assert_eq!(action("/sys/fs/bpf", &node), BpffsAction::Ready);
        // Nothing at /sys/fs/bpf yet: vsteer may mount it.
        let bare = [("/", "ext4"), ("/sys", "sysfs")];
        assert_eq!(action("/sys/fs/bpf/vsteer", &bare), BpffsAction::MountHome);
        // Anywhere else: refused, never a mount on the parent (which would hide /var/run).
        let BpffsAction::Refuse(message) = action("/var/run/vsteer", &node) else {
            panic!("a pin dir on ext4 was accepted");
        };
        assert!(
            message.starts_with(
                "--pin-dir /var/run/vsteer: not on a BPF filesystem (it is on ext4 mounted at /)"
            ),
            "{message}"
        );
        assert!(
            message.contains("bpffs is mounted at /sys/fs/bpf"),
            "{message}"
        );
        assert!(message.contains("mount -t bpf bpf DIR"), "{message}");
        let BpffsAction::Refuse(message) = action("/run/pins", &bare) else {
            panic!("accepted");
        };
        assert!(message.contains("no bpffs is mounted"), "{message}");
        // Something else mounted on /sys/fs/bpf, or over part of it: refused.
        let tmpfs_home = [("/", "ext4"), ("/sys/fs/bpf", "tmpfs")];
        assert!(matches!(
            action("/sys/fs/bpf/vsteer", &tmpfs_home),
            BpffsAction::Refuse(_)
        ));
        let over = [("/sys/fs/bpf", "bpf"), ("/sys/fs/bpf/x", "tmpfs")];
        assert!(matches!(
            action("/sys/fs/bpf/x/pins", &over),
            BpffsAction::Refuse(_)
        ));
        assert_eq!(action("/sys/fs/bpf/y/pins", &over), BpffsAction::Ready);
        // A later mount on the same point hides the earlier.
        let remounted = [("/sys/fs/bpf", "bpf"), ("/sys/fs/bpf", "tmpfs")];
        assert!(matches!(
            action("/sys/fs/bpf/vsteer", &remounted),
            BpffsAction::Refuse(_)
        ));
        // A bpffs mounted by the operator elsewhere is fine.
        let own = [("/", "ext4"), ("/run/vsteer-bpf", "bpf")];
        assert_eq!(action("/run/vsteer-bpf/pins", &own), BpffsAction::Ready);
    }
}
