//! Shared helpers for the integration tests: fixture paths, the fixture PRNG, ONNX Runtime.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// `inference/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A fixture model path.
pub fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(format!("{name}.onnx"))
}

/// A fixture image path.
pub fn image(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

/// The 16 real radiographs.
pub fn xrays() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/xrays");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpeg"))
        .collect();
    paths.sort();
    paths
}

/// Parses a JSON fixture.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Loads ONNX Runtime: `ORT_DYLIB_PATH`, else the library `scripts/setup.sh` installs.
pub fn ort() {
    if std::env::var_os("ORT_DYLIB_PATH").is_some() {
        if let Err(e) = augur_inference::runtime::environment() {
            panic!("{e}");
        }
        return;
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/onnxruntime/libonnxruntime.so.1.32.0");
    if let Err(e) = augur_inference::runtime::init(&fallback) {
        panic!("{e}");
    }
}

/// The fixture LCG of `fixtures/generate.py`.
pub struct Lcg(u32);

impl Lcg {
    pub fn new(seed: u32) -> Self {
        Lcg(seed)
    }

    pub fn uniform(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((self.0 >> 8) as f64 / 16_777_216.0 * 2.0 - 1.0) as f32
            })
            .collect()
    }
}

/// The reference input tensors of `generate.py` (`zeros`, `ramp`, `lcg:SEED`).
pub fn reference_input(kind: &str, n: usize) -> Vec<f32> {
    match kind {
        "zeros" => vec![0.0; n],
        "ramp" => (0..n).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect(),
        other => {
            let seed: u32 = other.strip_prefix("lcg:").unwrap().parse().unwrap();
            Lcg::new(seed).uniform(n)
        }
    }
}
