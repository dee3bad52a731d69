//! Embeds the eBPF object built by `cargo xtask build` into the agent, so the binary needs no
//! runtime path to it.
use std::{env, fs, path::PathBuf};

const OBJECT_ENV: &str = "VSTEER_EBPF_OBJECT";

fn main() {
    println!("cargo:rerun-if-env-changed={OBJECT_ENV}");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let default = manifest.join("../target/ebpf/bpfel-unknown-none/release/vsteer-ebpf");
    let object = env::var_os(OBJECT_ENV)
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("vsteer.bpf.o");
    if let Err(err) = fs::copy(&object, &out) {
        panic!(
            "the eBPF object {} is missing ({err}): build through `cargo xtask build` \
             (or `cargo xtask test`), which compiles the kernel programs first",
            object.display()
        );
    }
}
