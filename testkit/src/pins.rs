//! A bpffs directory of a test's own, removed with everything pinned in it on drop, and the
//! state directory (the agent's last good config snapshot) that goes with it.
use std::path::{Path, PathBuf};

pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// `/sys/fs/bpf/<unique name>`; not created: the agent creates it (and mounts bpffs).
    pub fn new() -> Self {
        Self {
            path: Path::new("/sys/fs/bpf").join(crate::unique_name("pins")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `--state-dir` for an agent on these pins (bpffs holds no plain files).
    pub fn state_dir(&self) -> PathBuf {
        state_dir_for(&self.path)
    }
}

/// The state directory that goes with a pin directory: in the temporary directory, named
/// after it, removed with a [`PinDir`].
pub fn state_dir_for(pin_dir: &Path) -> PathBuf {
    let name = pin_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pins".into());
    std::env::temp_dir().join(format!("{name}-state"))
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.path.exists()
            && let Err(err) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!("testkit: could not remove {}: {err}", self.path.display());
        }
        let state = self.state_dir();
        if state.exists()
            && let Err(err) = std::fs::remove_dir_all(&state)
        {
            eprintln!("testkit: could not remove {}: {err}", state.display());
        }
    }
}
