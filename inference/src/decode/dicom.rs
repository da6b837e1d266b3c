//! DICOM Part 10 files through `dicom-object` and `dicom-pixeldata` (pure Rust codecs only).
//!
//! Only the first frame is read. Grayscale (`MONOCHROME1`, `MONOCHROME2`) goes through:
//!
//! 1. the modality LUT: `Rescale Slope`/`Rescale Intercept` (identity when absent);
//! 2. the VOI window, when `Window Center`/`Window Width` are present: the first pair, with the
//!    DICOM *linear* function (PS3.3 C.11.2.1.2.1) onto `[0, 1]`; without a window, the frame's own
//!    minimum..maximum is stretched onto `[0, 1]`;
//! 3. `MONOCHROME1` (white is low) is inverted, `1 − y`, so that bone is always bright.
//!
//! Colour (`RGB`, or `YBR_*` inside JPEG, which the codec turns into RGB) is scaled by
//! `2^BitsStored − 1`. `PALETTE COLOR`, planar configuration 1 and VOI LUT sequences are
//! rejected or ignored (the window is used instead), with a typed error where rejected.
//!
//! Transfer syntaxes: Implicit VR Little Endian, Explicit VR Little/Big Endian, RLE Lossless
//! and the JPEG 8/12-bit lossy and lossless processes (`jpeg-decoder`). JPEG 2000, JPEG-LS,
//! HTJ2K and JPEG XL need C codecs and are rejected as unsupported; Deflated Explicit VR Little
//! Endian is rejected because its element lengths cannot be checked before inflating (see
//! `dicom_scan.rs`). Tested here: Explicit and Implicit VR Little Endian.
//!
//! Every declared element length is checked against the body before `dicom-object` parses it
//! (it allocates declared lengths up front).
//!
//! `Rows × Columns × NumberOfFrames` is checked against [`Limits`] before pixel data is decoded.
//! Error messages never include element values, so patient tags cannot leak into logs.

use dicom_dictionary_std::tags;
use dicom_object::file::{OddLengthStrategy, ReadPreamble};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};

use super::{DecodeError, DecodedImage, Limits};

/// The most bits per sample read: the rescale table has `2^BitsStored` entries.
const MAX_BITS_STORED: u32 = 16;

/// Decodes a DICOM file (with or without the 128-byte preamble).
pub fn decode(body: &[u8], limits: &Limits) -> Result<DecodedImage, DecodeError> {
    let data = if body.get(128..132) == Some(b"DICM") {
        &body[128..]
    } else if body.starts_with(b"DICM") {
        body
    } else {
        return Err(DecodeError::Malformed("missing the DICM marker"));
    };
    // Before dicom-object allocates any declared length: each must fit in the body.
    super::dicom_scan::check_lengths(data)?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        // The pre-scan steps over odd lengths as declared; so must the parser.
        .odd_length_strategy(OddLengthStrategy::Accept)
        .from_reader(data)
        .map_err(|_| {
            DecodeError::Dicom("cannot parse the data set (truncated or malformed)".into())
        })?;

    let rows = int_tag(&obj, tags::ROWS, "Rows")?.ok_or(DecodeError::Dicom("no Rows".into()))?;
    let cols =
        int_tag(&obj, tags::COLUMNS, "Columns")?.ok_or(DecodeError::Dicom("no Columns".into()))?;
    let frames = int_tag(&obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1);
    let samples = int_tag(&obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    limits.check_dimensions(cols, rows, frames)?;
    if samples != 1 && samples != 3 {
        return Err(DecodeError::Unsupported(format!(
            "DICOM with {samples} samples per pixel"
        )));
    }
    // dicom-pixeldata's rescale LUT has 2^BitsStored entries and asserts 1..=32 bits (a fuzzed
    // BitsStored of 0 panicked there); radiographs store 8 to 16.
    let bits_stored = int_tag(&obj, tags::BITS_STORED, "BitsStored")?;
    let bits_allocated = int_tag(&obj, tags::BITS_ALLOCATED, "BitsAllocated")?;
    if let (Some(stored), Some(allocated)) = (bits_stored, bits_allocated) {
        if !(1..=MAX_BITS_STORED).contains(&stored) || stored > allocated {
            return Err(DecodeError::Unsupported(format!(
                "DICOM with {stored} of {allocated} bits stored (1 to {MAX_BITS_STORED} are read)"
            )));
        }
    } else {
        return Err(DecodeError::Dicom("no BitsStored or BitsAllocated".into()));
    }
    let photometric = obj
        .element_opt(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_owned())
        .unwrap_or_default();
    let mono = match photometric.as_str() {
        "MONOCHROME1" | "MONOCHROME2" if samples == 1 => true,
        "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" if samples == 3 => false,
        other => {
            let shown: String = other.chars().take(24).collect();
            return Err(DecodeError::Unsupported(format!(
                "DICOM photometric interpretation {shown:?}"
            )));
        }
    };

    let pixels = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| DecodeError::Dicom(format!("pixel data: {e}")))?;
    if pixels.rows() != rows || pixels.columns() != cols {
        return Err(DecodeError::Dicom(
            "decoded size differs from Rows/Columns".into(),
        ));
    }
    let expected = rows as usize * cols as usize * samples as usize;

    if mono {
        let options = ConvertOptions::new()
            .with_modality_lut(ModalityLutOption::Default)
            .with_voi_lut(VoiLutOption::Identity);
        let values: Vec<f32> = pixels
            .to_vec_frame_with_options(0, &options)
            .map_err(|e| DecodeError::Dicom(format!("pixel data: {e}")))?;
        if values.len() < expected {
            return Err(DecodeError::Malformed(
                "DICOM pixel data is shorter than Rows × Columns",
            ));
        }
        let window = pixels
            .window()
            .ok()
            .flatten()
            .and_then(|w| w.first().copied())
            .filter(|w| w.width >= 1.0 && w.width.is_finite() && w.center.is_finite());
        let mut out = match window {
            Some(w) => apply_window(&values[..expected], w.center, w.width),
            None => stretch(&values[..expected]),
        };
        if photometric == "MONOCHROME1" {
            out.iter_mut().for_each(|v| *v = 1.0 - *v);
        }
        Ok(DecodedImage {
            width: cols,
            height: rows,
            channels: 1,
            pixels: out,
        })
    } else {
        if pixels.photometric_interpretation().as_str() != "RGB" {
            return Err(DecodeError::Unsupported(
                "uncompressed YBR colour DICOM".to_owned(),
            ));
        }
        let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
        let values: Vec<f32> = pixels
            .to_vec_frame_with_options(0, &options)
            .map_err(|e| DecodeError::Dicom(format!("pixel data: {e}")))?;
        if values.len() < expected {
            return Err(DecodeError::Malformed(
                "DICOM pixel data is shorter than Rows × Columns",
            ));
        }
        let max = ((1u32 << pixels.bits_stored().clamp(1, 16)) - 1) as f32; // checked above
        Ok(DecodedImage {
            width: cols,
            height: rows,
            channels: 3,
            pixels: values[..expected]
                .iter()
                .map(|v| (v / max).clamp(0.0, 1.0))
                .collect(),
        })
    }
}

/// The DICOM linear VOI function onto `[0, 1]` (PS3.3 C.11.2.1.2.1).
pub fn apply_window(values: &[f32], center: f64, width: f64) -> Vec<f32> {
    let (c, w) = (center - 0.5, width - 1.0);
    values
        .iter()
        .map(|&x| {
            let x = f64::from(x);
            if w <= 0.0 {
                return if x <= c { 0.0 } else { 1.0 };
            }
            (((x - c) / w) + 0.5).clamp(0.0, 1.0) as f32
        })
        .collect()
}

/// Stretches the values' own minimum..maximum onto `[0, 1]` (all zero when flat).
fn stretch(values: &[f32]) -> Vec<f32> {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![0.0; values.len()];
    }
    values.iter().map(|&v| (v - lo) / span).collect()
}

fn int_tag(
    obj: &DefaultDicomObject,
    tag: dicom_object::Tag,
    name: &'static str,
) -> Result<Option<u32>, DecodeError> {
    match obj.element_opt(tag) {
        Ok(Some(e)) => e
            .to_int::<u32>()
            .map(Some)
            .map_err(|_| DecodeError::Dicom(format!("{name} is not a number"))),
        Ok(None) => Ok(None),
        Err(_) => Err(DecodeError::Dicom(format!("cannot read {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linear_window_follows_the_standard() {
        // c = 40, w = 400: [-160, 240] onto [0, 1].
        let out = apply_window(&[-1000.0, 39.5, 1000.0], 40.0, 400.0);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 0.5).abs() < 1e-6);
        assert_eq!(out[2], 1.0);
    }

    #[test]
    fn stretch_handles_flat_images() {
        assert_eq!(stretch(&[3.0, 3.0]), vec![0.0, 0.0]);
        assert_eq!(stretch(&[1.0, 3.0]), vec![0.0, 1.0]);
    }
}
