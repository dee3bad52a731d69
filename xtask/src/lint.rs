//! `cargo xtask lint`: formatting and clippy, workspace and eBPF crate alike.
use std::process::Command;

use anyhow::{Context, Result};

use crate::{build, paths, setup};

pub fn run() -> Result<()> {
    build::ebpf()?;
    setup::run_cmd(
        Command::new("cargo")
            .current_dir(paths::root())
            .args(["fmt", "--all", "--check"]),
    )
    .context("cargo fmt (workspace)")?;
    setup::run_cmd(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "fmt",
                "--check",
                "--manifest-path",
            ])
            .arg(paths::root().join("ebpf/Cargo.toml")),
    )
    .context("cargo fmt (eBPF crate)")?;
    setup::run_cmd(build::cargo_with_object().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("cargo clippy (workspace)")?;
    setup::run_cmd(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .arg("--manifest-path")
            .arg(paths::root().join("ebpf/Cargo.toml"))
            .arg("--target-dir")
            .arg(paths::target().join("ebpf-clippy"))
            .args(["--", "-D", "warnings"]),
    )
    .context("cargo clippy (eBPF crate)")
}
