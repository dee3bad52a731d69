//! `cargo xtask lint`: formatting and clippy, for the workspace (host), the eBPF crate (its
//! BPF target), and the workspace as a machine without the BPF toolchain sees it.
use std::process::Command;

use anyhow::{Context, Result};

use crate::{build, paths, setup};

pub fn run() -> Result<()> {
    setup::toolchain()?;
    setup::run_cmd(
        Command::new("cargo")
            .current_dir(paths::root())
            .args(["fmt", "--all", "--check"]),
    )
    .context("cargo fmt")?;
    setup::run_cmd(build::cargo().args([
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
            .args(["--package", "vsteer-ebpf"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .current_dir(paths::root())
            .arg("--target-dir")
            .arg(paths::target().join("ebpf-clippy"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["--", "-D", "warnings"]),
    )
    .context("cargo clippy (eBPF crate, BPF target)")?;
    // A checkout whose kernel programs were never built (no bpf-linker: AYA_BUILD_SKIP
    // stands for it), in a target directory of its own: the datapath embeds an empty
    // object and clippy still passes.
    setup::run_cmd(
        Command::new("cargo")
            .current_dir(paths::root())
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .env("AYA_BUILD_SKIP", "1")
            .env("CARGO_TARGET_DIR", paths::target().join("no-ebpf"))
            .env_remove(build::REQUIRE_EBPF_ENV)
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .context("cargo clippy (workspace, without the eBPF object)")
}
