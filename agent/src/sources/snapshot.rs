//! The last good copy of each config file, kept on disk so that a restarted agent still has
//! what a file that no longer parses held. One snapshot per pin directory (per datapath),
//! in the state directory (bpffs, where the pins live, holds no plain files):
//! `<state dir>/<pin dir as a name>/` with `owner` (the pin and config directories it
//! belongs to) and `files/<file name>`, each the bytes of that file's last version that
//! parsed without an error. Written atomically (a temporary file renamed into place), only
//! when a file's bytes changed.
//!
//! At start, a file that does not parse (or is unreadable, or has documents that do not
//! decode) is first given its last good copy, then what it holds now: the store then keeps
//! the last good versions exactly as it does while running. A directory without config
//! files at start is given every copy.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vsteer";

const OWNER: &str = "owner";
const FILES: &str = "files";

#[derive(Debug, Clone)]
pub struct Snapshot {
    files: PathBuf,
}

impl Snapshot {
    /// The snapshot of the datapath pinned at `pin_dir`, for the config directory
    /// `config_dir`; one left for another config directory is discarded.
    pub fn open(state_dir: &Path, pin_dir: &Path, config_dir: &Path) -> Result<Snapshot> {
        let root = location(state_dir, pin_dir);
        let files = root.join(FILES);
        let owner = format!(
            "pin dir: {}\nconfig dir: {}\n",
            pin_dir.display(),
            config_dir.display()
        );
        let owner_path = root.join(OWNER);
        if fs::read_to_string(&owner_path).ok().as_deref() != Some(owner.as_str()) {
            if files.exists() {
                tracing::info!(snapshot = %root.display(), "the last good snapshot there belongs to another config directory: discarded");
                fs::remove_dir_all(&files)
                    .with_context(|| format!("removing {}", files.display()))?;
            }
            fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
            write_atomically(&owner_path, owner.as_bytes())
                .with_context(|| format!("writing {}", owner_path.display()))?;
        }
        fs::create_dir_all(&files).with_context(|| format!("creating {}", files.display()))?;
        Ok(Snapshot { files })
    }

    /// The last good copy of the config file `path`, if any.
    pub fn load(&self, path: &Path) -> Option<Vec<u8>> {
        fs::read(self.files.join(path.file_name()?)).ok()
    }

    /// Keeps `bytes` as the last good copy of `path` (unless it already is).
    pub fn save(&self, path: &Path, bytes: &[u8]) {
        let Some(name) = path.file_name() else {
            return;
        };
        let copy = self.files.join(name);
        let same = fs::metadata(&copy).is_ok_and(|m| m.len() == bytes.len() as u64)
            && fs::read(&copy).is_ok_and(|old| old == bytes);
        if same {
            return;
        }
        if let Err(err) = write_atomically(&copy, bytes) {
            tracing::warn!(file = %path.display(), snapshot = %copy.display(), "the last good copy could not be written (a restart would not have it): {err}");
        }
    }

    /// Forgets the copy of a file that is gone.
    pub fn remove(&self, path: &Path) {
        if let Some(name) = path.file_name() {
            let _ = fs::remove_file(self.files.join(name));
        }
    }

    /// The names of the files there are copies of.
    pub fn names(&self) -> Vec<std::ffi::OsString> {
        let Ok(entries) = fs::read_dir(&self.files) else {
            return Vec::new();
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

/// Where the snapshot of the datapath pinned at `pin_dir` lives.
pub fn location(state_dir: &Path, pin_dir: &Path) -> PathBuf {
    let name: String = pin_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    state_dir.join(if name.is_empty() { "root".into() } else { name })
}

/// Writes `path` as a whole or not at all: a temporary file next to it, renamed over it. Not
/// synced to disk: the snapshot is for agent restarts (the page cache has it); after a crash
/// of the node, the kernel state it stands next to is gone as well.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_kept_per_pin_and_config_directory() {
        let state = tempfile::tempdir().unwrap();
        let pins = Path::new("/sys/fs/bpf/vsteer");
        let config = Path::new("/etc/vsteer");
        let snapshot = Snapshot::open(state.path(), pins, config).unwrap();
        assert!(state.path().join("sys-fs-bpf-vsteer/files").is_dir());
        let a = config.join("a.yaml");
        snapshot.save(&a, b"one");
        assert_eq!(snapshot.load(&a).as_deref(), Some(&b"one"[..]));
        snapshot.save(&a, b"two");
        assert_eq!(snapshot.load(&a).as_deref(), Some(&b"two"[..]));
        assert_eq!(snapshot.names(), ["a.yaml"]);
        // The same pins and config: kept.
        let again = Snapshot::open(state.path(), pins, config).unwrap();
        assert_eq!(again.load(&a).as_deref(), Some(&b"two"[..]));
        // Another config directory: discarded.
        let other = Snapshot::open(state.path(), pins, Path::new("/etc/other")).unwrap();
        assert!(other.names().is_empty());
        other.save(&a, b"x");
        other.remove(&a);
        assert!(other.load(&a).is_none());
    }
}
