//! `cargo xtask test`: set up, prove the pure crates need nothing but stable, then run every
//! test of the workspace (the agent's build compiles the kernel programs).
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build, paths, setup};

/// The crates that must build and test on stable alone: no aya, no eBPF object (the proxy
/// too: it serves the plan's HTTP tables and knows the kernel only through a trait).
const PURE: [&str; 4] = [
    "vsteer-model",
    "vsteer-plan",
    "vsteer-compiler",
    "vsteer-proxy",
];

pub fn run(extra: &[String]) -> Result<()> {
    setup::run()?;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "\n*** not root: the kernel tests will SKIP (set VSTEER_REQUIRE_KERNEL_TESTS=1 to make \
             that a failure) ***\n"
        );
    }
    if extra.is_empty() {
        pure_crates()?;
    }
    let mut cmd = build::cargo();
    // The kernel tests each build a network namespace and a cgroup; two at a time suit the
    // 2-core machines this runs on.
    cmd.args(["test", "--workspace"]).args(extra);
    if std::env::var_os("RUST_TEST_THREADS").is_none() {
        cmd.env("RUST_TEST_THREADS", "2");
    }
    setup::run_cmd(&mut cmd).context("cargo test")
}

/// The pure crates depend on no kernel crate, and pass their tests with stable and a PATH
/// without bpf-linker.
fn pure_crates() -> Result<()> {
    let mut tree = Command::new("cargo");
    tree.current_dir(paths::root())
        .args(["tree", "--edges", "normal,build", "--prefix", "none"]);
    for krate in PURE {
        tree.args(["--package", krate]);
    }
    let tree = setup::output_of(&mut tree).context("cargo tree of the pure crates")?;
    let kernel: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("aya") || l.starts_with("vsteer-datapath"))
        .collect();
    if !kernel.is_empty() {
        bail!("the pure crates depend on kernel crates: {kernel:?}");
    }
    let linker = setup::bpf_linker_bin();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::env::split_paths(&path)
            .filter(|dir| !dir.join("bpf-linker").exists() && *dir != linker),
    )
    .context("building PATH")?;
    let mut test = Command::new("cargo");
    test.current_dir(paths::root())
        .arg("test")
        .env("PATH", path)
        .env("RUSTUP_TOOLCHAIN", "stable");
    for krate in PURE {
        test.args(["--package", krate]);
    }
    println!("test: the pure crates on stable, without bpf-linker on PATH");
    setup::run_cmd(&mut test).context("cargo test of the pure crates")
}
