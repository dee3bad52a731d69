//! The self-check the `compile` fuzz target and its replayed regressions run: config files
//! applied one by one through the incremental `Compiler` (as the agent's store keeps them)
//! must give, after each file, what compiling everything from scratch gives with the plan
//! in force as the last good one. One definition, so the fuzzer and the tests check alike.

use std::sync::Arc;

use vsteer_model::parse::parse_bytes;
use vsteer_model::store::{FileUpdate, Store};

use crate::{Change, Compiler, Plan, compile};

/// Applies `files` (name, bytes) in order; returns the last plan, or where and how the
/// incremental compiler first disagreed with compiling from scratch.
pub fn incremental_agrees_with_scratch<'a>(
    files: impl IntoIterator<Item = (String, &'a [u8])>,
) -> Result<Plan, String> {
    let mut store = Store::default();
    let mut incremental = Compiler::default();
    let mut last_good = Plan::default();
    for (file, bytes) in files {
        let changes = store.apply([FileUpdate::Read {
            parsed: parse_bytes(&file, bytes.to_vec()),
            file: file.clone().into(),
        }]);
        let mut batch: Vec<Change> = changes
            .upserted
            .iter()
            .map(|r| (r.id.clone(), Some(Arc::clone(r))))
            .collect();
        batch.extend(changes.removed.iter().map(|id| (id.clone(), None)));
        incremental.update(&batch);
        // As the agent applies a file: a resource rejected now keeps what it had, in both.
        let resources: Vec<_> = store.resources().iter().map(|r| (**r).clone()).collect();
        let scratch = compile(&resources, &last_good);
        if incremental.plan() != &scratch.plan {
            return Err(format!(
                "after {file}: incremental plan\n{:?}\ndiffers from scratch\n{:?}",
                incremental.plan(),
                scratch.plan
            ));
        }
        if incremental.kept() != scratch.kept {
            return Err(format!(
                "after {file}: kept services {:?} differ from scratch {:?}",
                incremental.kept(),
                scratch.kept
            ));
        }
        last_good = scratch.plan;
    }
    Ok(last_good)
}
