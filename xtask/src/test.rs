//! `cargo xtask test`: set up, build the eBPF object, then run every test of the workspace.
use anyhow::{Context, Result};
use nix::unistd::geteuid;

use crate::{build, setup};

pub fn run(extra: &[String]) -> Result<()> {
    build::ebpf()?;
    if !geteuid().is_root() {
        eprintln!(
            "\n*** not root: the kernel tests will SKIP (set VSTEER_REQUIRE_KERNEL_TESTS=1 to make \
             that a failure) ***\n"
        );
    }
    let mut cmd = build::cargo_with_object();
    // The kernel tests each build a network namespace and a cgroup; two at a time suit the
    // 2-core machines this runs on.
    cmd.args(["test", "--workspace"]).args(extra);
    if std::env::var_os("RUST_TEST_THREADS").is_none() {
        cmd.env("RUST_TEST_THREADS", "2");
    }
    setup::run_cmd(&mut cmd).context("cargo test")
}
