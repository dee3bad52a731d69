//! Where things live in the workspace.
use std::path::PathBuf;

/// The workspace root (xtask sits one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

pub fn target() -> PathBuf {
    root().join("target")
}

/// Build tools installed by `setup`, cached in the ignored target directory.
pub fn tools() -> PathBuf {
    target().join("tools")
}

pub fn bpf_linker_root() -> PathBuf {
    tools().join("bpf-linker")
}
