//! The compiler on arbitrary resource sets: the input is up to four config files (split at
//! NUL bytes), checked by `vsteer_compiler::agreement` (incremental, file by file, equals
//! from scratch); nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsteer_compiler::agreement::incremental_agrees_with_scratch;

fuzz_target!(|data: &[u8]| {
    let files = data
        .split(|b| *b == 0)
        .take(4)
        .enumerate()
        .map(|(i, bytes)| (format!("f{i}.yaml"), bytes));
    match incremental_agrees_with_scratch(files) {
        Ok(plan) => drop(vsteer_plan::render(&plan)),
        Err(disagreement) => panic!("{disagreement}"),
    }
});
