//! Decoding and preprocessing against the values `fixtures/generate.py` wrote, hostile input,
//! and the 16 real radiographs.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use augur_inference::decode::{decode, DecodeError, DecodeOptions, DecodedImage};
use augur_inference::metadata::{InputSpec, Layout, Normalization, ResizeFilter};
use augur_inference::preprocess::{resize, Preprocessor};

/// An input the `image_decode` fuzz target found (`fuzz/regressions/image_decode/`): byte 0
/// picks the content type, byte 1 the recipe, the rest is the body.
fn fuzz_regression(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/image_decode")
        .join(name);
    std::fs::read(path).expect("the fuzz regression input")
}

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
    let input = fuzz_regression("dicom-declared-length-64mib");
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
    let input = fuzz_regression("dicom-unknown-vr-long-length");
    let err = decode(&input[2..], Some("application/dicom"), &opts).expect_err("refused");
    assert!(err.to_string().contains("longer than the file"), "{err}");
}

/// Found by the fuzzer: BitsStored 40 made dicom-pixeldata's rescale table assert (a panic);
/// 1 to 16 bits stored, at most BitsAllocated, are read, and the rest refused as unsupported.
#[test]
fn bits_stored_outside_one_to_sixteen_is_refused() {
    let opts = DecodeOptions::default();
    let input = fuzz_regression("dicom-bits-stored-40");
    let err = decode(&input[2..], Some("application/dicom"), &opts).expect_err("refused");
    assert!(err.to_string().contains("40 of 16 bits stored"), "{err}");

    let original = std::fs::read(common::image("mono2-rescale.dcm")).expect("fixture");
    let at = original
        .windows(8)
        .position(|w| w == [0x28, 0x00, 0x01, 0x01, b'U', b'S', 0x02, 0x00])
        .expect("an explicit BitsStored")
        + 8;
    for bits in [0u16, 17, 32] {
        let mut patched = original.clone();
        patched[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        let err = decode(&patched, Some("application/dicom"), &opts).expect_err("refused");
        assert!(err.to_string().contains("bits stored"), "{bits}: {err}");
    }
    assert!(decode(&original, Some("application/dicom"), &opts).is_ok());
}

/// Found by the fuzzer: a JPEG on which zune-jpeg 0.5.15 panics (an `unwrap` in its AVX2
/// IDCT, upstream zune-image#409). `decode` contains it: a typed error, not a panic.
#[test]
fn a_panicking_jpeg_decoder_gives_a_typed_error() {
    let input = fuzz_regression("jpeg-zune-avx2-idct-panic");
    let result = decode(&input[2..], Some("image/jpeg"), &DecodeOptions::default());
    // zune-jpeg picks its IDCT at run time; only the AVX2 one panics on this input.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let err = result.expect_err("refused");
        assert!(err.to_string().contains("decoder failed"), "{err}");
    }
}

/// A DICOM body: `DICM`, a meta group holding only the transfer syntax `ts`, then `dataset`.
fn dicom_body(ts: &str, dataset: &[u8]) -> Vec<u8> {
    let mut uid = ts.as_bytes().to_vec();
    if uid.len() % 2 == 1 {
        uid.push(0);
    }
    let mut meta = Vec::new();
    meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00]);
    meta.extend_from_slice(b"UI");
    meta.extend_from_slice(&(uid.len() as u16).to_le_bytes());
    meta.extend_from_slice(&uid);
    let mut body = b"DICM".to_vec();
    body.extend_from_slice(&[0x02, 0x00, 0x00, 0x00]);
    body.extend_from_slice(b"UL");
    body.extend_from_slice(&4u16.to_le_bytes());
    body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    body.extend_from_slice(&meta);
    body.extend_from_slice(dataset);
    body
}

/// A DICOM body in Implicit VR Little Endian.
fn implicit_vr_dicom(dataset: &[u8]) -> Vec<u8> {
    dicom_body("1.2.840.10008.1.2", dataset)
}

/// An Implicit VR element header: group, element, 4-byte length.
fn implicit_header(group: u16, element: u16, length: u32) -> Vec<u8> {
    let mut h = group.to_le_bytes().to_vec();
    h.extend_from_slice(&element.to_le_bytes());
    h.extend_from_slice(&length.to_le_bytes());
    h
}

/// The pre-scan reads the body as dicom-parser does, so a header the parser will allocate for
/// cannot hide where the scan steps over. Each body here ends in a 2 GiB SOP Class UID that
/// the parser would reserve and zero-fill before failing to read it.
#[test]
fn a_length_hidden_where_the_scan_and_the_parser_part_is_refused() {
    let opts = DecodeOptions::default();
    let refused = |body: &[u8], why: &str| {
        let err = decode(body, Some("application/dicom"), &opts).expect_err("refused");
        assert!(err.to_string().contains(why), "want {why:?}, got: {err}");
    };
    let bomb = implicit_header(0x0008, 0x0016, 0x7FFF_FFF0);

    // Found by the fuzzer: the meta group's length covers an element of another group,
    // which dicom-object reads as meta, so the transfer syntax after it (Implicit VR) holds.
    // The scan stopped the meta group at the first tag not in group 2 and read on as Explicit
    // VR, where the last header is cut short; the parser read 2.8 GB from it.
    let input = fuzz_regression("dicom-meta-group-off-group-tag");
    refused(&input[2..], "longer than the file");

    // A delimiter with a length: the parser steps over its 8-byte header only.
    let mut ds = implicit_header(0xFFFE, 0xE00D, bomb.len() as u32);
    ds.extend_from_slice(&bomb);
    refused(&implicit_vr_dicom(&ds), "delimiter with a length");

    // Implicit VR: Referenced Image Sequence (0008,1140) is SQ in the dictionary, so the parser
    // reads its value as items, and a sequence delimiter there ends it early: what follows
    // inside the declared length is read as elements. The scan steps in as the parser does.
    let mut inner = implicit_header(0xFFFE, 0xE0DD, 0);
    inner.extend_from_slice(&bomb);
    let mut ds = implicit_header(0x0008, 0x1140, inner.len() as u32);
    ds.extend_from_slice(&inner);
    refused(&implicit_vr_dicom(&ds), "longer than the file");

    // The same bytes under a tag the dictionary does not call a sequence are an opaque value
    // to both (Image Type is CS): the scan no longer guesses "sequence" from the first bytes.
    let mut ds = implicit_header(0x0008, 0x0008, inner.len() as u32);
    ds.extend_from_slice(&inner);
    let err = decode(&implicit_vr_dicom(&ds), Some("application/dicom"), &opts)
        .expect_err("no image in it");
    assert!(!err.to_string().contains("longer than the file"), "{err}");

    // Found by the fuzzer next: a binary value is read in whole numbers, so Command Group
    // Length (UL) declaring 91 bytes is read as 88, and the parser took the 3 left over as the
    // start of a header declaring 3.5 GB that the scan, 3 bytes further on, never saw.
    let input = fuzz_regression("dicom-ul-length-not-multiple-of-4");
    refused(&input[2..], "not a whole number of values");
    // The same with Rows (US) declaring 3 bytes.
    let mut ds = implicit_header(0x0028, 0x0010, 3);
    ds.extend_from_slice(&[0, 1, 0]);
    ds.extend_from_slice(&bomb);
    refused(&implicit_vr_dicom(&ds), "not a whole number of values");

    // Every deflated syntax is refused before inflating.
    for ts in [
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.95",
        "1.2.840.10008.1.2.4.205",
    ] {
        refused(&dicom_body(ts, &[]), "deflated");
    }
}
