//! `cargo xtask setup`: install what the build needs and is missing. Idempotent and quick when
//! everything is there.
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use nix::unistd::geteuid;

use crate::paths;

/// bpf-linker release that supports LLVM 22 (the LLVM of the nightly toolchain here).
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_FEATURE: &str = "llvm-22";

/// Everything: the toolchain, and the system tools the tests, the demo and the bench use.
pub fn run() -> Result<()> {
    toolchain()?;
    ensure_system_tools()
}

/// What building needs (an image build installs no test tools).
pub fn toolchain() -> Result<()> {
    ensure_nightly_rust_src()?;
    ensure_bpf_linker()
}

/// Runs a command and fails with its name when it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
pub fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot =
        output_of(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
            .context("the eBPF programs need the nightly toolchain (rustup toolchain nightly)")?;
    Ok(PathBuf::from(sysroot))
}

fn ensure_nightly_rust_src() -> Result<()> {
    let src = nightly_sysroot()?.join("lib/rustlib/src/rust/library/core");
    if src.is_dir() {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain (needed by -Z build-std)");
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The versioned libLLVM shared object that nightly rustc itself runs on.
fn nightly_libllvm() -> Result<PathBuf> {
    let lib = nightly_sysroot()?.join("lib");
    let entries = fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("libLLVM.so.") {
            return Ok(entry.path());
        }
    }
    bail!(
        "no libLLVM.so.* in {}: cannot build bpf-linker against nightly's LLVM",
        lib.display()
    )
}

pub fn bpf_linker_bin() -> PathBuf {
    paths::bpf_linker_root().join("bin")
}

/// bpf-linker must run on the same LLVM as the rustc that emits the bitcode, and Debian has no
/// LLVM 22: link it against nightly rustc's own libLLVM through a fake LLVM prefix.
fn ensure_bpf_linker() -> Result<()> {
    let libllvm = nightly_libllvm()?;
    let stamp_text = format!("bpf-linker {BPF_LINKER_VERSION} on {}\n", libllvm.display());
    let stamp = paths::bpf_linker_root().join("vsteer-stamp");
    if bpf_linker_bin().join("bpf-linker").is_file()
        && fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
    {
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute)",
        libllvm.display()
    );
    let prefix = paths::tools().join("llvm-prefix");
    make_llvm_prefix(&prefix, &libllvm)?;
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ])
            .args([
                "--no-default-features",
                "--features",
                BPF_LINKER_FEATURE,
                "--force",
            ])
            .arg("--root")
            .arg(paths::bpf_linker_root())
            .env("LLVM_PREFIX", &prefix),
    )?;
    fs::write(&stamp, stamp_text).with_context(|| format!("writing {}", stamp.display()))
}

fn make_llvm_prefix(prefix: &Path, libllvm: &Path) -> Result<()> {
    let lib = prefix.join("lib");
    let bin = prefix.join("bin");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let versioned = lib.join(libllvm.file_name().context("libLLVM has no file name")?);
    for link in [lib.join("libLLVM.so"), versioned] {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    // bpf-linker's build script only checks that llvm-config exists.
    let llvm_config = bin.join("llvm-config");
    fs::write(&llvm_config, "#!/bin/sh\nexit 0\n")
        .with_context(|| format!("writing {}", llvm_config.display()))?;
    fs::set_permissions(&llvm_config, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// System tools the kernel tests use, by command and Debian package: bpftool is how
/// operators (and the kernel tests) look at what vsteer loaded; `ip` (iproute2) builds the
/// veth pairs between test namespaces; `setpriv` runs the agent with only the DaemonSet's
/// capabilities; kubectl dry-runs the deploy manifests.
const SYSTEM_TOOLS: [(&str, &str); 4] = [
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("setpriv", "util-linux"),
    ("kubectl", "kubernetes-client"),
];

fn ensure_system_tools() -> Result<()> {
    let missing: Vec<&str> = SYSTEM_TOOLS
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !geteuid().is_root() || !have("apt-get") {
        println!(
            "setup: missing {}; install (Debian: apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
        return Ok(());
    }
    println!("setup: installing {}", missing.join(", "));
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
