//! PNG and JPEG through the `image` crate (features `png` and `jpeg` only).
//!
//! Supported: PNG gray/gray+alpha/RGB/RGBA at 8 or 16 bits (alpha is dropped; palette PNGs
//! expand to RGB), JPEG 8-bit gray/RGB/CMYK, baseline and progressive. 12-bit JPEG is rejected
//! by the decoder with [`DecodeError::Image`].
//!
//! The header is read first, here, without the decoder (PNG: the IHDR chunk; JPEG: the first
//! SOFn segment) and checked against
//! [`Limits`]; the decoder then runs with `image::Limits` as a second guard on allocations.
//!
//! A panic inside the decoder is turned into [`DecodeError::Malformed`] here: `zune-jpeg`
//! 0.5.15, the newest release, still panics on some hostile JPEGs (an `unwrap` in its AVX2
//! IDCT, found by our fuzzer; upstream zune-image#409, fixed on its development branch).

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, ImageFormat, ImageReader};

use super::{DecodeError, DecodedImage, Limits, MediaType};

/// Decodes a PNG or JPEG body.
pub fn decode(body: &[u8], kind: MediaType, limits: &Limits) -> Result<DecodedImage, DecodeError> {
    let format = match kind {
        MediaType::Png => ImageFormat::Png,
        MediaType::Jpeg => ImageFormat::Jpeg,
        _ => {
            return Err(DecodeError::UnsupportedContentType(
                kind.as_str().to_owned(),
            ))
        }
    };
    let (width, height) = match format {
        ImageFormat::Png => png_dimensions(body)?,
        _ => jpeg_dimensions(body)?,
    };
    limits.check_dimensions(width, height, 1)?;

    let mut reader = ImageReader::with_format(Cursor::new(body), format);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_dimension);
    image_limits.max_image_height = Some(limits.max_dimension);
    // Up to 4 channels × 2 bytes for the decoded buffer, plus one f32 conversion.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4 * 2 + 4 * 3));
    reader.limits(image_limits);
    // The reader owns only its view of `body`: nothing is left half-changed by a panic.
    let image = catch_unwind(AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| DecodeError::Malformed("the image decoder failed on this body"))?
        .map_err(image_error)?;
    Ok(from_dynamic(image))
}

/// Width and height from the IHDR chunk, which the PNG spec requires first (bytes 8..33).
fn png_dimensions(body: &[u8]) -> Result<(u32, u32), DecodeError> {
    let ihdr = body
        .get(8..24)
        .filter(|h| &h[4..8] == b"IHDR")
        .ok_or(DecodeError::Malformed("PNG without an IHDR chunk"))?;
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok((be(&ihdr[8..12]), be(&ihdr[12..16])))
}

/// Width and height from the first SOFn marker segment, walking the marker segments after SOI
/// by their lengths (no entropy-coded data precedes a frame header).
fn jpeg_dimensions(body: &[u8]) -> Result<(u32, u32), DecodeError> {
    let truncated = DecodeError::Malformed("JPEG ends before its frame header");
    let mut pos = 2; // after SOI
    loop {
        if body.get(pos) != Some(&0xFF) {
            return Err(DecodeError::Malformed("JPEG marker expected"));
        }
        while body.get(pos) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        let marker = *body
            .get(pos)
            .ok_or(DecodeError::Malformed("JPEG ends before its frame header"))?;
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD7 => continue,
            0xD8..=0xDA => return Err(truncated),
            _ => {}
        }
        let segment = body
            .get(pos..pos + 2)
            .ok_or(DecodeError::Malformed("JPEG ends before its frame header"))?;
        let len = usize::from(u16::from_be_bytes([segment[0], segment[1]]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let h = body.get(pos + 3..pos + 7).ok_or(truncated)?;
            let height = u32::from(u16::from_be_bytes([h[0], h[1]]));
            let width = u32::from(u16::from_be_bytes([h[2], h[3]]));
            return Ok((width, height));
        }
        if len < 2 {
            return Err(DecodeError::Malformed("JPEG segment length below 2"));
        }
        pos += len;
    }
}

/// Converts a decoded image to `[0, 1]` intensities: 8-bit as `v/255`, 16-bit as `v/65535`.
fn from_dynamic(image: DynamicImage) -> DecodedImage {
    let (width, height) = (image.width(), image.height());
    if image.color().has_color() {
        DecodedImage {
            width,
            height,
            channels: 3,
            pixels: image.into_rgb32f().into_raw(),
        }
    } else {
        DecodedImage {
            width,
            height,
            channels: 1,
            pixels: image.to_luma32f().into_raw(),
        }
    }
}

fn image_error(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(_) => DecodeError::DecoderLimit,
        image::ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        other => DecodeError::Image(other.to_string()),
    }
}
