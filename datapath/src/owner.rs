//! Who owns a pin directory: exactly one agent. Two agents writing the same maps cross-route
//! services, so an agent takes an exclusive `flock(2)` on the pin directory itself before
//! it touches anything there (bpffs holds no plain files, and a lock on the directory needs
//! nothing created). The kernel drops the lock when the owner exits, however it exits, so a
//! crash never leaves a stale lock behind; `/proc/locks` says who holds it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock on a pin directory, held until dropped (or the process exits).
pub struct PinDirOwner {
    _lock: Flock<File>,
    /// (device, inode) of the directory locked.
    locked: (u64, u64),
}

/// The answer to a claim.
pub enum Claim {
    Owned(PinDirOwner),
    /// Another process holds the pin directory; its pid when `/proc/locks` tells.
    Busy {
        holder: Option<u32>,
    },
}

impl PinDirOwner {
    /// Claims `pin_dir` without waiting, first making sure it exists on a bpffs (see
    /// [`crate::mounts`]).
    pub fn claim(pin_dir: &Path) -> Result<Claim> {
        crate::mounts::ensure_bpffs(pin_dir)?;
        Self::claim_existing(pin_dir)?
            .with_context(|| format!("pin directory {} vanished", pin_dir.display()))
    }

    /// Claims `pin_dir` if it exists (`None` when it does not), creating nothing.
    pub fn claim_existing(pin_dir: &Path) -> Result<Option<Claim>> {
        let dir = match File::open(pin_dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", pin_dir.display())),
        };
        let metadata = dir
            .metadata()
            .with_context(|| format!("reading {}", pin_dir.display()))?;
        let locked = (metadata.dev(), metadata.ino());
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Claim::Owned(PinDirOwner {
                _lock: lock,
                locked,
            }))),
            Err((_, Errno::EWOULDBLOCK)) => {
                let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
                let holder = flock_holder(&locks, metadata.dev(), metadata.ino());
                Ok(Some(Claim::Busy { holder }))
            }
            Err((_, errno)) => Err(errno).with_context(|| format!("locking {}", pin_dir.display())),
        }
    }
}

/// Who holds a pin directory, for messages: `the agent with pid N`, or `another process`
/// when `/proc/locks` did not tell.
pub fn holder_name(holder: Option<u32>) -> String {
    holder.map_or_else(
        || "another process".to_string(),
        |pid| format!("the agent with pid {pid}"),
    )
}

impl PinDirOwner {
    /// Whether `pin_dir` is still the directory this lock holds (not removed and made
    /// again, which a second claim would then have to lock).
    pub fn covers(&self, pin_dir: &Path) -> bool {
        std::fs::metadata(pin_dir).is_ok_and(|m| (m.dev(), m.ino()) == self.locked)
    }
}

/// The pid holding a `flock` on the file (`dev`, `ino`), from `/proc/locks` text, whose lines
/// read `1: FLOCK  ADVISORY  WRITE 4242 00:1f:12345 0 EOF` (device major:minor in hex).
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let file = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiting request reads `1: -> FLOCK ...`: not a holder.
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] if *id == file => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let dev = nix::sys::stat::makedev(0, 0x1f);
        let locks = "\
1: POSIX  ADVISORY  WRITE 100 00:1f:777 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 00:1f:12345 0 EOF
2: -> FLOCK  ADVISORY  WRITE 5151 00:1f:12345 0 EOF
3: FLOCK  ADVISORY  WRITE 99 00:20:12345 0 EOF
";
        assert_eq!(flock_holder(locks, dev, 12345), Some(4242));
        assert_eq!(
            flock_holder(locks, dev, 777),
            None,
            "a POSIX lock is not ours"
        );
        assert_eq!(flock_holder(locks, dev, 1), None);
    }

    /// Two claims in one process (two open file descriptions) exclude each other as two
    /// agents do; the lock goes with the owner.
    #[test]
    fn a_second_claim_is_busy_until_the_owner_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let Some(Claim::Owned(owner)) = PinDirOwner::claim_existing(dir.path()).unwrap() else {
            panic!("a fresh directory was not claimed");
        };
        match PinDirOwner::claim_existing(dir.path()).unwrap() {
            Some(Claim::Busy { holder }) => assert_eq!(holder, Some(std::process::id())),
            _ => panic!("a second claim succeeded"),
        }
        assert!(owner.covers(dir.path()));
        assert!(!owner.covers(&dir.path().join("other")));
        drop(owner);
        assert!(matches!(
            PinDirOwner::claim_existing(dir.path()).unwrap(),
            Some(Claim::Owned(_))
        ));
        let gone = dir.path().join("gone");
        assert!(PinDirOwner::claim_existing(&gone).unwrap().is_none());
    }
}
