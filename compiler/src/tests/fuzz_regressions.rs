//! Inputs the `compile` fuzz target once failed on (`fuzz/regressions/compile/`), replayed
//! through the same check (`crate::agreement`).

use crate::agreement::incremental_agrees_with_scratch;

/// The input convention of `fuzz/fuzz_targets/compile.rs`: up to four files split at NUL.
fn check(data: &[u8]) {
    let files = data
        .split(|b| *b == 0)
        .take(4)
        .enumerate()
        .map(|(i, bytes)| (format!("f{i}.yaml"), bytes));
    if let Err(disagreement) = incremental_agrees_with_scratch(files) {
        panic!("{disagreement}");
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
