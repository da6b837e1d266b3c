//! The `image_decode` fuzz target's committed inputs, replayed under `cargo test` on stable:
//! the seeds in `fuzz/corpus/image_decode/` and every crash found so far in
//! `fuzz/regressions/image_decode/` (see docs/fuzzing.md). The input layout, limits and
//! checks mirror `fuzz/fuzz_targets/image_decode.rs`: byte 0 picks the content type, byte 1
//! the preprocessing recipe, the rest is the body.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use augur_inference::metadata::{InputSpec, Layout, Normalization, ResizeFilter};
use augur_inference::preprocess::Preprocessor;
use augur_inference::{decode::decode, DecodeOptions, Limits};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("image/png"),
    Some("image/jpeg"),
    Some("application/dicom"),
    Some("application/octet-stream"),
    Some("multipart/form-data; boundary=augurfuzz"),
    Some("application/json"),
    Some("multipart/form-data"),
];

const LIMITS: Limits = Limits {
    max_bytes: 1 << 20,
    max_dimension: 4096,
    max_pixels: 1 << 20,
};

fn spec(b: u8) -> InputSpec {
    let channels = if b & 1 == 0 { 1 } else { 3 };
    let size = u32::from(b >> 4) * 4 + 4;
    let crop = (b & 8 != 0).then_some([size / 2, size / 2 + 1]);
    InputSpec {
        name: None,
        layout: if b & 2 == 0 {
            Layout::Nchw
        } else {
            Layout::Nhwc
        },
        channels,
        width: size,
        height: size + 1,
        resize: if b & 4 == 0 {
            ResizeFilter::Nearest
        } else {
            ResizeFilter::Bilinear
        },
        crop,
        normalization: match (channels, b & 8 != 0) {
            (3, true) => Normalization::MeanStd {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
            (_, true) => Normalization::Range {
                min: -1024.0,
                max: 1024.0,
            },
            _ => Normalization::Unit,
        },
    }
}

/// Feeds one input to the decoder and preprocessing; returns whether it decoded.
fn replay(data: &[u8]) -> bool {
    let [ct, recipe, body @ ..] = data else {
        return false;
    };
    let content_type = CONTENT_TYPES[usize::from(*ct) % CONTENT_TYPES.len()];
    let opts = DecodeOptions {
        limits: LIMITS,
        ..DecodeOptions::default()
    };
    let Ok(image) = decode(body, content_type, &opts) else {
        return false;
    };
    assert!(image.channels == 1 || image.channels == 3);
    let expected = image.width as usize * image.height as usize * usize::from(image.channels);
    assert_eq!(image.pixels.len(), expected);
    assert!(LIMITS
        .check_dimensions(image.width, image.height, 1)
        .is_ok());
    assert!(image.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    let spec = spec(*recipe);
    assert_eq!(
        Preprocessor::new(&spec).tensor(&image).len(),
        spec.image_len()
    );
    true
}

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("image_decode");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    files.sort();
    files
}

#[test]
fn fuzz_seed_corpus_decodes_or_fails_cleanly() {
    let seeds = inputs("corpus");
    assert!(!seeds.is_empty(), "fuzz/corpus/image_decode is empty");
    let decoded = seeds
        .iter()
        .filter(|p| replay(&std::fs::read(p).unwrap()))
        .count();
    // The seeds include valid PNG, JPEG, DICOM, multipart and JSON bodies.
    assert!(
        decoded >= 8,
        "only {decoded} of {} seeds decode",
        seeds.len()
    );
}

#[test]
fn fuzz_regressions_decode_or_fail_cleanly() {
    for path in inputs("regressions") {
        replay(&std::fs::read(&path).unwrap());
    }
}
