//! The `image_decode` input layout and checks, shared by the fuzz target
//! (`fuzz/fuzz_targets/image_decode.rs`) and its replay under `cargo test`
//! (`inference/tests/fuzz_corpus.rs`), which both include this file with `#[path]`.
//!
//! Byte 0 picks the `Content-Type` ([`CONTENT_TYPES`], modulo its length), byte 1 the
//! preprocessing recipe ([`spec`]), the rest is the request body. A decoded image must have 1
//! or 3 channels, `width × height × channels` pixels, dimensions within the limits and every
//! intensity in `[0, 1]`; the tensor must have the length the recipe promises.

use augur_inference::metadata::{InputSpec, Layout, Normalization, ResizeFilter};
use augur_inference::preprocess::Preprocessor;
use augur_inference::{decode::decode, DecodeOptions, Limits};

/// The `Content-Type` values a request may carry (`None`: no header, sniff the bytes).
pub(crate) const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("image/png"),
    Some("image/jpeg"),
    Some("application/dicom"),
    Some("application/octet-stream"),
    Some("multipart/form-data; boundary=augurfuzz"),
    Some("application/json"),
    Some("multipart/form-data"),
];

/// Limits small enough to keep the fuzzer fast; the checks are the same code as the defaults.
pub(crate) const LIMITS: Limits = Limits {
    max_bytes: 1 << 20,
    max_dimension: 4096,
    max_pixels: 1 << 20,
};

/// A preprocessing recipe from one byte: channels, layout, filter, crop and a size of
/// 4..=64 px.
pub(crate) fn spec(b: u8) -> InputSpec {
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

/// Feeds one input to the decoder and preprocessing, asserting the checks above; returns
/// whether it decoded.
pub(crate) fn replay(data: &[u8]) -> bool {
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
    assert!(
        image.channels == 1 || image.channels == 3,
        "{} channels",
        image.channels
    );
    let expected = image.width as usize * image.height as usize * usize::from(image.channels);
    assert_eq!(image.pixels.len(), expected, "pixel count");
    assert!(
        LIMITS
            .check_dimensions(image.width, image.height, 1)
            .is_ok(),
        "decoded {}x{} past the limits",
        image.width,
        image.height
    );
    assert!(
        image.pixels.iter().all(|v| (0.0..=1.0).contains(v)),
        "intensities outside [0, 1]"
    );
    let spec = spec(*recipe);
    let tensor = Preprocessor::new(&spec).tensor(&image);
    assert_eq!(tensor.len(), spec.image_len(), "tensor length");
    true
}
