//! A bpffs directory of a test's own, removed with everything pinned in it on drop.
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
    }
}
