//! Loading ONNX Runtime (`libonnxruntime.so`) once per process.
//!
//! `ort` is built with `load-dynamic`: nothing is downloaded or linked at build time, and the
//! library is opened with `ort::init_from(path)` on first use. The path comes from the caller or
//! from `ORT_DYLIB_PATH`; `scripts/setup.sh` installs
//! `.cache/onnxruntime/libonnxruntime.so.1.32.0` from the PyPI `onnxruntime` wheel.
//! ONNX Runtime allows one environment per process, so the first successful initialisation wins
//! and later calls (with any path) share it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

/// The environment variable naming `libonnxruntime.so`.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// ONNX Runtime could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No path given and `ORT_DYLIB_PATH` unset.
    #[error(
        "ONNX Runtime library not configured: set ORT_DYLIB_PATH to libonnxruntime.so \
         (run scripts/setup.sh, which installs .cache/onnxruntime/libonnxruntime.so.1.32.0)"
    )]
    NotConfigured,
    /// The path does not exist.
    #[error(
        "ONNX Runtime library {0} does not exist: set ORT_DYLIB_PATH to libonnxruntime.so \
         (run scripts/setup.sh, which installs .cache/onnxruntime/libonnxruntime.so.1.32.0)"
    )]
    Missing(PathBuf),
    /// The library could not be opened or is too old.
    #[error("cannot load ONNX Runtime from {path} (ORT_DYLIB_PATH; scripts/setup.sh installs 1.32.0): {reason}")]
    Load {
        /// The library path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The process-wide environment, loading the library from `ORT_DYLIB_PATH` on first use.
pub fn environment() -> Result<Environment, RuntimeError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    let path = std::env::var_os(ORT_DYLIB_PATH)
        .filter(|p| !p.is_empty())
        .ok_or(RuntimeError::NotConfigured)?;
    init(Path::new(&path))
}

/// The process-wide environment, loading the library from `path` unless already loaded.
pub fn init(path: &Path) -> Result<Environment, RuntimeError> {
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    if !path.is_file() {
        return Err(RuntimeError::Missing(path.to_owned()));
    }
    let load = |reason: String| RuntimeError::Load {
        path: path.to_owned(),
        reason,
    };
    let env = ort::init_from(path)
        .map_err(|e| load(e.to_string()))?
        .with_name("augur-shadow")
        .build()
        .map_err(|e| load(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env).clone())
}
