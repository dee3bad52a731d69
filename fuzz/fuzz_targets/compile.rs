//! The compiler on arbitrary resource sets: the input is up to four config files (split at
//! NUL bytes), parsed and kept as the agent's store keeps them, and applied file by file
//! through the incremental compiler, which after each file must agree with compiling
//! everything from scratch with the plan in force as the last good one; neither may panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vsteer_compiler::{Change, Compiler, compile};
use vsteer_model::parse::parse_bytes;
use vsteer_model::store::{FileUpdate, Store};
use vsteer_plan::Plan;

fuzz_target!(|data: &[u8]| {
    let mut store = Store::default();
    let mut incremental = Compiler::default();
    let mut last_good = Plan::default();
    for (i, bytes) in data.split(|b| *b == 0).take(4).enumerate() {
        let file = format!("f{i}.yaml");
        let changes = store.apply([FileUpdate::Read {
            parsed: parse_bytes(&file, bytes.to_vec()),
            file: file.into(),
        }]);
        let mut batch: Vec<Change> = changes
            .upserted
            .iter()
            .map(|r| (r.id.clone(), Some(Arc::clone(r))))
            .collect();
        batch.extend(changes.removed.iter().map(|id| (id.clone(), None)));
        incremental.update(&batch);
        // After each file, as the agent applies it: from scratch, with the plan in force
        // as the last good one (a resource rejected now keeps what it had, in both).
        let resources: Vec<_> = store.resources().iter().map(|r| (**r).clone()).collect();
        let scratch = compile(&resources, &last_good);
        assert_eq!(
            incremental.plan(),
            &scratch.plan,
            "the incremental compiler disagrees with compiling from scratch after f{i}.yaml"
        );
        assert_eq!(
            incremental.kept(),
            scratch.kept,
            "kept services after f{i}.yaml"
        );
        last_good = scratch.plan;
    }
    let _ = vsteer_plan::render(&last_good);
});
