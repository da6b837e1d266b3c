//! Decoding and preprocessing against the values `fixtures/generate.py` wrote, hostile input,
//! and the 16 real radiographs.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use augur_inference::decode::{decode, DecodeError, DecodeOptions, DecodedImage};
use augur_inference::metadata::{InputSpec, Layout, Normalization, ResizeFilter};
use augur_inference::preprocess::{resize, Preprocessor};

fn decode_file(name: &str) -> Result<DecodedImage, DecodeError> {
    let bytes = std::fs::read(common::image(name)).unwrap();
    decode(&bytes, None, &DecodeOptions::default())
}

#[test]
fn fixtures_decode_to_their_expected_pixels() {
    let expected = common::json(&common::image("expected.json"));
    let mut checked = 0;
    for (name, want) in expected.as_object().unwrap() {
        if name.starts_with('_') {
            continue;
        }
        let got = decode_file(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            u64::from(got.width),
            want["width"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(got.height),
            want["height"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(got.channels),
            want["channels"].as_u64().unwrap(),
            "{name}"
        );
        let tol = want["tolerance"].as_f64().unwrap();
        let pixels = want["pixels"].as_array().unwrap();
        assert_eq!(got.pixels.len(), pixels.len(), "{name}");
        for (i, (g, w)) in got.pixels.iter().zip(pixels).enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                (f64::from(*g) - w).abs() <= tol,
                "{name}[{i}]: got {g}, want {w}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 9, "4 PNG (8/16-bit gray/RGB), 2 JPEG, 3 DICOM");
}

#[test]
fn dicom_content_type_and_preamble_are_honoured() {
    let bytes = std::fs::read(common::image("mono2-rescale-window.dcm")).unwrap();
    let opts = DecodeOptions::default();
    assert!(decode(&bytes, Some("application/dicom"), &opts).is_ok());
    // Without the 128-byte preamble.
    assert!(decode(&bytes[128..], Some("application/dicom"), &opts).is_ok());
    assert!(matches!(
        decode(&bytes, Some("image/png"), &opts),
        Err(DecodeError::ContentTypeMismatch { .. })
    ));
}

#[test]
fn hostile_headers_are_rejected_before_allocating() {
    for name in [
        "huge-60000x60000.png",
        "huge-65535x65535.jpeg",
        "huge-frames.dcm",
    ] {
        match decode_file(name) {
            Err(DecodeError::TooManyPixels { width, height, .. }) => {
                assert!(width >= 60_000 && height >= 60_000, "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn truncated_and_garbage_files_are_typed_errors() {
    for name in ["truncated.png", "truncated.jpeg", "truncated.dcm"] {
        assert!(decode_file(name).is_err(), "{name}");
    }
    // Every prefix of a small PNG and DICOM: an error or an image, never a panic.
    let opts = DecodeOptions::default();
    for name in ["gray8.png", "mono1-implicit.dcm", "gray.jpeg"] {
        let bytes = std::fs::read(common::image(name)).unwrap();
        for n in (0..bytes.len()).step_by(7) {
            let _ = decode(&bytes[..n], None, &opts);
        }
        // Flipped bytes in the middle.
        let mut corrupt = bytes.clone();
        for i in (bytes.len() / 3..bytes.len()).step_by(11) {
            corrupt[i] ^= 0x5A;
        }
        let _ = decode(&corrupt, None, &opts);
    }
}

#[test]
fn resize_matches_pil_on_float_images() {
    let expected = common::json(&common::image("expected.json"));
    let src = DecodedImage {
        width: 10,
        height: 7,
        channels: 1,
        pixels: (0..7)
            .flat_map(|y| (0..10).map(move |x| ((x * 7 + y * 13) % 23) as f32 / 22.0))
            .collect(),
    };
    for case in expected["_resize"]["cases"].as_array().unwrap() {
        let (w, h) = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        let filter = match case["filter"].as_str().unwrap() {
            "nearest" => ResizeFilter::Nearest,
            _ => ResizeFilter::Bilinear,
        };
        let got = resize(&src, w, h, filter);
        for (i, (g, want)) in got
            .pixels
            .iter()
            .zip(case["pixels"].as_array().unwrap())
            .enumerate()
        {
            let want = want.as_f64().unwrap();
            assert!(
                (f64::from(*g) - want).abs() < 1e-5,
                "{filter:?} {w}x{h} [{i}]: got {g}, want {want}"
            );
        }
    }
}

/// The three documented recipes (README): CheXNet, torchxrayvision, the Xception.
fn recipes() -> Vec<(&'static str, InputSpec)> {
    vec![
        (
            "chexnet",
            InputSpec {
                name: None,
                layout: Layout::Nchw,
                channels: 3,
                width: 256,
                height: 256,
                resize: ResizeFilter::Bilinear,
                crop: Some([224, 224]),
                normalization: Normalization::MeanStd {
                    mean: vec![0.485, 0.456, 0.406],
                    std: vec![0.229, 0.224, 0.225],
                },
            },
        ),
        (
            "torchxrayvision",
            InputSpec {
                name: None,
                layout: Layout::Nchw,
                channels: 1,
                width: 224,
                height: 224,
                resize: ResizeFilter::Bilinear,
                crop: None,
                normalization: Normalization::Range {
                    min: -1024.0,
                    max: 1024.0,
                },
            },
        ),
        (
            "xception",
            InputSpec {
                name: None,
                layout: Layout::Nhwc,
                channels: 3,
                width: 150,
                height: 150,
                resize: ResizeFilter::Nearest,
                crop: None,
                normalization: Normalization::Range {
                    min: -1.0,
                    max: 1.0,
                },
            },
        ),
    ]
}

#[test]
fn all_16_real_xrays_decode_and_preprocess() {
    let paths = common::xrays();
    assert_eq!(paths.len(), 16);
    let recipes = recipes();
    for (i, path) in paths.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let image = decode(&bytes, Some("image/jpeg"), &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(image.channels, 1, "{}: grayscale JPEG", path.display());
        assert!(image.width >= 900 && image.height >= 590);
        // Every recipe on a few images (debug builds are slow); the Xception one on all.
        for (name, spec) in &recipes {
            if *name != "xception" && i % 5 != 0 {
                continue;
            }
            let tensor = Preprocessor::new(spec).tensor(&image);
            assert_eq!(tensor.len(), spec.image_len(), "{name}");
            let (lo, hi) = tensor
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            assert!(tensor.iter().all(|v| v.is_finite()));
            assert!(hi > lo, "{name}: a radiograph is not flat");
            match *name {
                "xception" => assert!(lo >= -1.0 && hi <= 1.0),
                "torchxrayvision" => assert!(lo >= -1024.0 && hi <= 1024.0),
                _ => assert!(lo >= -2.2 && hi <= 2.7),
            }
        }
    }
}

/// The `image_decode` fuzz target's find: a 556-byte DICOM whose Pixel Data declares 64 MiB
/// (and the same with 4 GiB) is refused by the length pre-scan before anything is allocated.
#[test]
fn a_declared_length_beyond_the_body_is_refused_before_allocation() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/image_decode/dicom-declared-length-64mib"
    );
    let input = std::fs::read(path).expect("the fuzz regression input");
    // The fuzz target's first two bytes choose the content type and the recipe.
    let body = &input[2..];
    let opts = DecodeOptions::default();
    let err = decode(body, Some("application/dicom"), &opts).expect_err("refused");
    assert!(
        err.to_string().contains("longer than the file"),
        "refused by the pre-scan, not after allocating: {err}"
    );
    // The same file declaring 4 GiB - 16: the pre-scan's verdict is the same.
    let original = std::fs::read(common::image("mono1-implicit.dcm")).expect("fixture");
    let mut huge = original.clone();
    let at = (0..huge.len() - 8)
        .find(|&i| huge[i..i + 4] == [0xE0, 0x7F, 0x10, 0x00])
        .expect("a Pixel Data tag");
    huge[at + 4..at + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = decode(&huge, Some("application/dicom"), &opts).expect_err("refused");
    assert!(err.to_string().contains("longer than the file"), "{err}");
    assert!(decode(&original, Some("application/dicom"), &opts).is_ok());
    // Found by the CI fuzz run: an element whose VR bytes are not a VR (`\0\0`), which
    // dicom-parser reads as UN with a 4-byte length; the pre-scan reads it the same way.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/image_decode/dicom-unknown-vr-long-length"
    );
    let input = std::fs::read(path).expect("the fuzz regression input");
    let err = decode(&input[2..], Some("application/dicom"), &opts).expect_err("refused");
    assert!(err.to_string().contains("longer than the file"), "{err}");
}
