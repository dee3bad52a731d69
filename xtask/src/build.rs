//! `cargo xtask build`: the agent with stable; the datapath's build script compiles the
//! kernel programs (nightly, bpf-linker from `setup`) and embeds them.
use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::{paths, setup};

/// Makes the datapath's build script fail instead of embedding an empty object when
/// bpf-linker is missing: xtask's builds always carry the kernel programs.
pub const REQUIRE_EBPF_ENV: &str = "VSTEER_REQUIRE_EBPF";

/// Sets up the toolchain, then builds everything; returns the path of the `vsteer` binary.
pub fn all(release: bool) -> Result<PathBuf> {
    setup::toolchain()?;
    let mut cmd = cargo();
    cmd.args(["build", "--package", "vsteer"]);
    if release {
        cmd.arg("--release");
    }
    setup::run_cmd(&mut cmd).context("building the agent and its kernel programs")?;
    let profile = if release { "release" } else { "debug" };
    Ok(paths::target().join(profile).join("vsteer"))
}

/// A stable `cargo` command whose builds embed freshly built kernel programs.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(paths::root())
        .env(REQUIRE_EBPF_ENV, "1")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}
