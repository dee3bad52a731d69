//! Builds the kernel programs (the `vsteer-ebpf` crate, with nightly for bpfel-unknown-none)
//! into OUT_DIR, as aya-template does with aya-build, so the object embedded in the agent is
//! always built from the sources next to it: cargo reruns this whenever the eBPF or common
//! crate changes. (aya-build itself forwards every line of the nested build as a cargo
//! warning, which cargo replays on every later build of the workspace; this does the same
//! steps and speaks only on failure.)
//!
//! Without bpf-linker (a plain `cargo check` or clippy on a machine that never ran
//! `cargo xtask setup`) it embeds an empty object instead, says so in a warning, and the
//! agent refuses to load it; `cargo xtask build` sets VSTEER_REQUIRE_EBPF=1 so that its builds
//! fail rather than stub.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// Where `cargo xtask setup` caches bpf-linker (see xtask/src/paths.rs).
const CACHED_LINKER: &str = "target/tools/bpf-linker/bin";
const REQUIRE_ENV: &str = "VSTEER_REQUIRE_EBPF";

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("set by cargo")?);
    let root = manifest
        .parent()
        .context("the datapath crate sits in the workspace")?;
    let out = PathBuf::from(env::var_os("OUT_DIR").context("set by cargo")?);
    let object = out.join("vsteer-ebpf");
    let cached = root.join(CACHED_LINKER);
    println!("cargo:rerun-if-env-changed={REQUIRE_ENV}");
    println!(
        "cargo:rerun-if-changed={}",
        cached.join("bpf-linker").display()
    );
    // The eBPF crate depends on common; aya-build watches only the eBPF crate itself.
    println!("cargo:rerun-if-changed={}", root.join("common").display());

    // aya-build's switch, honoured the same way.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true");
    let linker = if skip { None } else { find_linker(&cached) };
    let Some(linker_dir) = linker else {
        if env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1") {
            bail!(
                "bpf-linker is neither on PATH nor in {} (or AYA_BUILD_SKIP is set): run \
                 `cargo xtask setup`",
                cached.display()
            );
        }
        println!(
            "cargo:warning=bpf-linker not found (or AYA_BUILD_SKIP set): the agent is built WITHOUT its kernel programs \
             (vsteer run will refuse to start); build with `cargo xtask build`"
        );
        return fs::write(&object, b"").with_context(|| format!("writing {}", object.display()));
    };
    // rustc finds the linker on PATH; the cached one goes first.
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![linker_dir];
    dirs.extend(env::split_paths(&path));
    // SAFETY: a build script is single-threaded here; the variable is read by the child cargo.
    unsafe { env::set_var("PATH", env::join_paths(dirs).context("building PATH")?) };

    let ebpf = root.join("ebpf");
    println!("cargo:rerun-if-changed={}", ebpf.display());
    build_ebpf(root, &out)?;
    Ok(())
}

/// `cargo +nightly build` of the eBPF crate for the BPF target, with BTF, in a target
/// directory of its own under OUT_DIR (sharing the workspace's would deadlock on its lock).
fn build_ebpf(root: &Path, out: &Path) -> Result<()> {
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb-unknown-none",
        _ => "bpfel-unknown-none",
    };
    // The host's architecture, for aya-ebpf's arch-specific bindings (as aya-build does).
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let target_dir = out.join("ebpf-target");
    let flags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_string(),
        "-Clink-arg=--btf".to_string(),
    ]
    .join("\u{1f}");
    let output = Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--package",
            "vsteer-ebpf",
        ])
        .args([
            "--bins",
            "--release",
            "--target",
            target,
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(root)
        .env("CARGO_ENCODED_RUSTFLAGS", flags)
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running `rustup run nightly cargo build` for the eBPF crate")?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "building the eBPF programs (vsteer-ebpf) with nightly failed: {}",
            output.status
        );
    }
    let built = target_dir.join(target).join("release/vsteer-ebpf");
    let object = out.join("vsteer-ebpf");
    fs::copy(&built, &object)
        .with_context(|| format!("copying {} to {}", built.display(), object.display()))?;
    Ok(())
}

/// The directory with `bpf-linker`: xtask's cache, else PATH.
fn find_linker(cached: &Path) -> Option<PathBuf> {
    if cached.join("bpf-linker").is_file() {
        return Some(cached.to_path_buf());
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path).find(|dir| dir.join("bpf-linker").is_file())
}
