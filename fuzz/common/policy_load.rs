//! The `policy_load` fuzz target's checks, shared by the target
//! (`fuzz/fuzz_targets/policy_load.rs`) and its replay under `cargo test`
//! (`policies/tests/fuzz_corpus.rs`), which both include this file with `#[path]`.
//!
//! Input: the bytes of one policy file (multi-document YAML), given to the loader as a file's
//! bytes are (`load_bytes`: size cap, UTF-8, then parsing). It must give a policy set or
//! diagnostics with at least one error, never a panic, a hang or unbounded memory. Sets that
//! load are also explained (`augur policy explain`, table and JSON), and every diagnostic and
//! warning is rendered.

/// Loads `data` and checks the outcome; returns whether it loaded.
pub(crate) fn check(data: &[u8]) -> bool {
    match augur_policies::load_bytes("fuzz.yaml", data) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = warning.to_string();
            }
            let explanation = augur_policies::explain::explain(&loaded.set);
            let _ = explanation.render_table();
            let _ = serde_json::to_string(&explanation);
            true
        }
        Err(err) => {
            assert!(
                err.diagnostics.iter().any(|d| d.is_error()),
                "a failed load must carry at least one error"
            );
            let _ = err.to_string();
            false
        }
    }
}
