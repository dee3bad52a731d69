//! Inputs the `compile` fuzz target once failed on (`fuzz/regressions/compile/`), replayed
//! as that target checks them: up to four files split at NUL bytes, kept as the agent's
//! store keeps them, compiled file by file through the incremental compiler, which after
//! each file must agree with compiling everything from scratch with the plan in force as
//! the last good one.

use std::sync::Arc;

use vsteer_model::parse::parse_bytes;
use vsteer_model::store::{FileUpdate, Store};

use super::*;

/// The check of `fuzz/fuzz_targets/compile.rs`.
fn check(data: &[u8]) {
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
}

#[test]
fn fuzz_regressions_compile() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/compile");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        check(&std::fs::read(&path).unwrap());
    }
    // The examples, as the fuzz corpus is seeded.
    let examples = [
        include_str!("../../../examples/details.yaml"),
        include_str!("../../../examples/ratings.yaml"),
        include_str!("../../../examples/reviews.yaml"),
    ];
    check(examples.join("\0").as_bytes());
}
