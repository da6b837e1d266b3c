//! A missing ONNX Runtime library is a clear error naming ORT_DYLIB_PATH and scripts/setup.sh.
//! (Its own test binary: the runtime is process-wide, and nothing here loads it.)

use std::path::Path;

use augur_inference::runtime::{self, RuntimeError};

#[test]
fn a_missing_library_names_the_fix() {
    let err = runtime::init(Path::new("/nonexistent/libonnxruntime.so.1.32.0")).unwrap_err();
    assert!(matches!(err, RuntimeError::Missing(_)));
    let text = err.to_string();
    assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
    assert!(text.contains("scripts/setup.sh"), "{text}");
    let text = RuntimeError::NotConfigured.to_string();
    assert!(text.contains("ORT_DYLIB_PATH") && text.contains("scripts/setup.sh"));
}
