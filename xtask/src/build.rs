//! `cargo xtask build`: the eBPF object with nightly, then the agent with stable, the object
//! embedded in the `vsteer` binary.
use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::{paths, setup};

/// Environment variable through which the agent's build script finds the eBPF object.
pub const EBPF_OBJECT_ENV: &str = "VSTEER_EBPF_OBJECT";

/// Builds everything; returns the path of the `vsteer` binary.
pub fn all(release: bool) -> Result<PathBuf> {
    ebpf()?;
    agent(release)
}

/// Builds the kernel programs. Always optimised: the verifier rejects much unoptimised code.
pub fn ebpf() -> Result<PathBuf> {
    setup::run()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![setup::bpf_linker_bin()];
    dirs.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(dirs).context("building PATH")?;
    setup::run_cmd(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "build", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .arg("--manifest-path")
            .arg(paths::root().join("ebpf/Cargo.toml"))
            .arg("--target-dir")
            .arg(paths::ebpf_target())
            .env("PATH", path)
            // BTF for maps and programs, so bpftool prints structured keys and values.
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "-Cdebuginfo=2\u{1f}-Clink-arg=--btf",
            )
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .context("building the eBPF programs")?;
    Ok(paths::ebpf_object())
}

pub fn agent(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo_with_object();
    cmd.args(["build", "--package", "vsteer"]);
    if release {
        cmd.arg("--release");
    }
    setup::run_cmd(&mut cmd).context("building the agent")?;
    let profile = if release { "release" } else { "debug" };
    Ok(paths::target().join(profile).join("vsteer"))
}

/// A stable `cargo` command that builds the agent with the freshly built eBPF object.
pub fn cargo_with_object() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(paths::root())
        .env(EBPF_OBJECT_ENV, paths::ebpf_object())
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}
