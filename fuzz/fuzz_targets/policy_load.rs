//! Policy files are untrusted input (they are hot-reloaded from disk): any bytes given to the
//! loader must give a policy set or diagnostics, never a panic, a hang or unbounded memory.
//!
//! Input: the bytes of one policy file (multi-document YAML). Sets that load are also
//! explained (`augur policy explain`, table and JSON), and every diagnostic is rendered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Files that are not UTF-8 are rejected before parsing (`load_paths` reads them as text).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match augur_policies::load_str("fuzz.yaml", text) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = warning.to_string();
            }
            let explanation = augur_policies::explain::explain(&loaded.set);
            let _ = explanation.render_table();
            let _ = serde_json::to_string(&explanation);
        }
        Err(err) => {
            assert!(
                err.diagnostics.iter().any(|d| d.is_error()),
                "a failed load must carry at least one error"
            );
            let _ = err.to_string();
        }
    }
});
