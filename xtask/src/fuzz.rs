//! `cargo xtask fuzz [--minutes N] [--only TARGET,...]`: the fuzz targets of `fuzz/`
//! (cargo-fuzz, libFuzzer, nightly) run one after the other for a bounded time each, from a
//! corpus seeded with the project's examples. cargo-fuzz is installed into `target/tools/`
//! when missing. A crash fails the run and names its input; copied to
//! `fuzz/regressions/<target>/`, it becomes a regression test (the model's and the
//! compiler's tests replay `parse/` and `compile/` there on stable, without the fuzzer).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{paths, setup};

/// The targets, in the order they run.
pub const TARGETS: [&str; 3] = ["parse", "compile", "tables"];

/// The cargo-fuzz release installed when none is found (MSRV within the stable toolchain).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run(minutes: f64, only: &[String]) -> Result<()> {
    let targets: Vec<&str> = if only.is_empty() {
        TARGETS.to_vec()
    } else {
        for name in only {
            if !TARGETS.contains(&name.as_str()) {
                bail!(
                    "no fuzz target {name:?}; the targets are {}",
                    TARGETS.join(", ")
                );
            }
        }
        TARGETS
            .iter()
            .copied()
            .filter(|t| only.iter().any(|o| o == t))
            .collect()
    };
    let seconds = (minutes * 60.0).round().max(1.0) as u64;
    let cargo_fuzz_dir = ensure_cargo_fuzz()?;
    let root = paths::root();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![cargo_fuzz_dir];
    dirs.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(dirs).context("building PATH")?;
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(target);
        seed(target, &corpus)?;
        println!(
            "fuzz: {target} for {seconds} s (corpus {})",
            corpus.display()
        );
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .env("PATH", &path)
            // The fuzz targets need the datapath's table code, not its kernel programs.
            .env("AYA_BUILD_SKIP", "1")
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .args(["--", &format!("-max_total_time={seconds}"), "-timeout=10"]);
        if let Err(err) = setup::run_cmd(&mut cmd) {
            let artifacts = root.join("fuzz/artifacts").join(target);
            bail!(
                "{err:#}\nfuzz target {target} found a failure: its input is in {} (replay: \
                 `cargo +nightly fuzz run {target} FILE`); copy it to fuzz/regressions/{target}/ \
                 to keep it as a regression test",
                artifacts.display()
            );
        }
    }
    Ok(())
}

/// Where cargo-fuzz is (on PATH, or installed into `target/tools/cargo-fuzz`).
fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let root = paths::tools().join("cargo-fuzz");
    let bin = root.join("bin");
    if bin.join("cargo-fuzz").exists() {
        return Ok(bin);
    }
    if setup::have("cargo-fuzz") {
        return Ok(bin);
    }
    println!(
        "fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}",
        root.display()
    );
    setup::run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "cargo-fuzz",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .arg("--root")
            .arg(&root),
    )?;
    Ok(bin)
}

/// Seeds an empty corpus: the examples and the kernel tests' kinds of config for the YAML
/// targets, a few backend sets for the tables.
fn seed(target: &str, corpus: &Path) -> Result<()> {
    fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let empty = fs::read_dir(corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let examples = paths::root().join("examples");
    let mut yaml: Vec<Vec<u8>> = Vec::new();
    for entry in
        fs::read_dir(&examples).with_context(|| format!("reading {}", examples.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            yaml.push(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        }
    }
    let seeds: Vec<Vec<u8>> = match target {
        "parse" => yaml,
        // Files split at NUL bytes: all the examples together, and each alone.
        "compile" => {
            let mut seeds = yaml.clone();
            seeds.push(yaml.join(&0u8));
            seeds
        }
        _ => vec![
            vec![0, 80, 0, 20, 0],
            vec![1, 1, 0, 1, 0, 1, 0],
            vec![0, 255, 255, 1, 0, 0, 1, 7, 0],
            std::iter::once(1)
                .chain((0..128).map(|i| i as u8))
                .collect(),
        ],
    };
    for (i, bytes) in seeds.iter().enumerate() {
        let file = corpus.join(format!("seed-{i}"));
        fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}
