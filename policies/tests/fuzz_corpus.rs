//! The `policy_load` fuzz target's committed inputs, replayed under `cargo test` on stable:
//! the seeds in `fuzz/corpus/policy_load/` and every crash found so far in
//! `fuzz/regressions/policy_load/` (see docs/fuzzing.md). Each must load or fail with
//! diagnostics, never panic, exactly as `fuzz/fuzz_targets/policy_load.rs` checks.

use std::path::{Path, PathBuf};

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("policy_load");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    files.sort();
    files
}

fn replay(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return;
    };
    match augur_policies::load_str("fuzz.yaml", text) {
        Ok(loaded) => {
            let explanation = augur_policies::explain::explain(&loaded.set);
            let _ = explanation.render_table();
            let _ = serde_json::to_string(&explanation);
        }
        Err(err) => assert!(
            err.diagnostics.iter().any(|d| d.is_error()),
            "{}: a failed load carries no error",
            path.display()
        ),
    }
}

#[test]
fn fuzz_seed_corpus_loads_or_fails_cleanly() {
    let seeds = inputs("corpus");
    assert!(!seeds.is_empty(), "fuzz/corpus/policy_load is empty");
    for path in &seeds {
        replay(path);
    }
}

#[test]
fn fuzz_regressions_load_or_fail_cleanly() {
    for path in inputs("regressions") {
        replay(&path);
    }
}
