//! Request bodies → images.
//!
//! [`decode`] takes the body of a prediction request and its `Content-Type` and returns a
//! [`DecodedImage`]: intensities in `[0, 1]`, 1 (gray) or 3 (RGB) interleaved channels.
//!
//! | content type | handled by |
//! |---|---|
//! | `image/png`, `image/jpeg` | [`png_jpeg`] (8/16-bit PNG, 8-bit baseline/progressive JPEG) |
//! | `application/dicom` | [`dicom`] (first frame; rescale, window, MONOCHROME1 inversion) |
//! | `multipart/form-data` | [`multipart`] (the file field, as a FastAPI `UploadFile` takes it) |
//! | `application/json` | [`json`] (base64 image at a JSON pointer) |
//! | `application/octet-stream` or none | sniffed from the magic bytes |
//!
//! Bodies are untrusted. The byte limit is checked first, then every decoder reads the header
//! dimensions and checks the pixel limit **before** allocating pixel buffers; every failure is
//! a [`DecodeError`], never a panic. Errors never quote image bytes or DICOM tags.

pub mod dicom;
mod dicom_scan;
pub mod json;
pub mod multipart;
pub mod png_jpeg;

/// A decoded image: `width × height × channels` intensities in `[0, 1]`, row-major, channels
/// interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 (gray) or 3 (RGB).
    pub channels: u8,
    /// `width * height * channels` values in `[0, 1]`.
    pub pixels: Vec<f32>,
}

/// Resource limits for untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body, in bytes (also the largest base64-decoded image).
    pub max_bytes: usize,
    /// Largest accepted width or height.
    pub max_dimension: u32,
    /// Largest accepted `width × height` (× frames for DICOM).
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 32 MiB, 16384 px per side, 50 megapixels: a large chest radiograph is about 3000×3000.
    fn default() -> Self {
        Limits {
            max_bytes: 32 << 20,
            max_dimension: 16_384,
            max_pixels: 50_000_000,
        }
    }
}

impl Limits {
    /// Checks declared dimensions (and frame count) before any pixel buffer is allocated.
    pub fn check_dimensions(
        &self,
        width: u32,
        height: u32,
        frames: u32,
    ) -> Result<(), DecodeError> {
        let pixels = u64::from(width) * u64::from(height) * u64::from(frames.max(1));
        if width == 0 || height == 0 {
            return Err(DecodeError::Malformed("image has a zero dimension"));
        }
        if width > self.max_dimension || height > self.max_dimension || pixels > self.max_pixels {
            return Err(DecodeError::TooManyPixels {
                width,
                height,
                frames,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    fn check_bytes(&self, len: usize) -> Result<(), DecodeError> {
        if len > self.max_bytes {
            return Err(DecodeError::TooLarge {
                bytes: len,
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// How request bodies are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Resource limits.
    pub limits: Limits,
    /// JSON pointer to the base64 image in `application/json` bodies (default `/image`).
    pub json_pointer: String,
    /// The multipart field holding the image (default `file`, FastAPI's usual name); when no
    /// part has this name, the first part with a `filename` is used.
    pub multipart_field: String,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            limits: Limits::default(),
            json_pointer: "/image".to_owned(),
            multipart_field: "file".to_owned(),
        }
    }
}

/// The image formats a body can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `application/dicom` (Part 10 file, with or without the 128-byte preamble).
    Dicom,
    /// `multipart/form-data` (carries its boundary).
    Multipart,
    /// `application/json`.
    Json,
}

impl MediaType {
    /// The canonical content type.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Dicom => "application/dicom",
            MediaType::Multipart => "multipart/form-data",
            MediaType::Json => "application/json",
        }
    }

    /// Guesses an image format from its first bytes (PNG, JPEG, DICOM only).
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(MediaType::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM") {
            Some(MediaType::Dicom)
        } else {
            None
        }
    }
}

/// Why a body could not be turned into an image.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is larger than [`Limits::max_bytes`].
    #[error("body of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Body size.
        bytes: usize,
        /// Limit.
        max: usize,
    },
    /// The declared dimensions exceed [`Limits`].
    #[error(
        "image of {width}x{height} px ({frames} frames) exceeds the limits (max {max_pixels} px)"
    )]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Declared frames (1 for PNG/JPEG).
        frames: u32,
        /// Limit.
        max_pixels: u64,
    },
    /// The decoder needed more memory than the limits allow.
    #[error("decoder memory limit exceeded")]
    DecoderLimit,
    /// The content type is not one this crate decodes.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// The body does not start like the declared content type.
    #[error("body is not {declared}{}", detected.map(|d| format!(" (looks like {})", d.as_str())).unwrap_or_default())]
    ContentTypeMismatch {
        /// What the request said.
        declared: &'static str,
        /// What the magic bytes say.
        detected: Option<MediaType>,
    },
    /// No content type and unrecognisable bytes.
    #[error("unrecognised image format")]
    UnknownFormat,
    /// The image is truncated or corrupt.
    #[error("malformed image: {0}")]
    Malformed(&'static str),
    /// The PNG/JPEG decoder failed (truncated or corrupt data).
    #[error("cannot decode image: {0}")]
    Image(String),
    /// The DICOM file is malformed or uses something unsupported.
    #[error("cannot decode DICOM: {0}")]
    Dicom(String),
    /// The image kind is valid but not supported (e.g. 12-bit JPEG, palette DICOM).
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The multipart body is malformed or has no file part.
    #[error("bad multipart body: {0}")]
    Multipart(&'static str),
    /// The JSON body is malformed or has no base64 image at the pointer.
    #[error("bad JSON body: {0}")]
    Json(String),
}

/// Decodes a request body into an image.
///
/// `content_type` is the request's `Content-Type` header value (parameters allowed).
pub fn decode(
    body: &[u8],
    content_type: Option<&str>,
    opts: &DecodeOptions,
) -> Result<DecodedImage, DecodeError> {
    decode_at_depth(body, content_type, opts, 0)
}

fn decode_at_depth(
    body: &[u8],
    content_type: Option<&str>,
    opts: &DecodeOptions,
    depth: u8,
) -> Result<DecodedImage, DecodeError> {
    opts.limits.check_bytes(body.len())?;
    let declared = match content_type.map(parse_media_type) {
        Some(Ok(Some(m))) => Some(m),
        Some(Ok(None)) | None => None,
        Some(Err(e)) => return Err(e),
    };
    let kind = match declared {
        Some(m @ (MediaType::Png | MediaType::Jpeg | MediaType::Dicom)) => {
            let detected = MediaType::sniff(body);
            if detected != Some(m) {
                return Err(DecodeError::ContentTypeMismatch {
                    declared: m.as_str(),
                    detected,
                });
            }
            m
        }
        Some(m) => m,
        None => MediaType::sniff(body).ok_or(DecodeError::UnknownFormat)?,
    };
    if depth > 0 && matches!(kind, MediaType::Multipart | MediaType::Json) {
        return Err(DecodeError::UnsupportedContentType(format!(
            "nested {}",
            kind.as_str()
        )));
    }
    match kind {
        MediaType::Png | MediaType::Jpeg => png_jpeg::decode(body, kind, &opts.limits),
        MediaType::Dicom => dicom::decode(body, &opts.limits),
        MediaType::Multipart => {
            let part =
                multipart::file_part(body, content_type.unwrap_or(""), &opts.multipart_field)?;
            decode_at_depth(part.body, part.content_type, opts, depth + 1)
        }
        MediaType::Json => {
            let bytes = json::image_bytes(body, &opts.json_pointer, &opts.limits)?;
            decode_at_depth(&bytes, None, opts, depth + 1)
        }
    }
}

/// Maps a `Content-Type` value to a [`MediaType`]; `Ok(None)` means "sniff the bytes"
/// (`application/octet-stream`, empty).
fn parse_media_type(value: &str) -> Result<Option<MediaType>, DecodeError> {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(Some(match essence.as_str() {
        "" | "application/octet-stream" => return Ok(None),
        "image/png" => MediaType::Png,
        "image/jpeg" | "image/jpg" | "image/pjpeg" => MediaType::Jpeg,
        "application/dicom" => MediaType::Dicom,
        "multipart/form-data" => MediaType::Multipart,
        "application/json" => MediaType::Json,
        _ => {
            let shown: String = essence.chars().take(64).collect();
            return Err(DecodeError::UnsupportedContentType(shown));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_and_unknown_content_types_are_typed_errors() {
        let opts = DecodeOptions::default();
        let png = b"\x89PNG\r\n\x1a\n0000";
        assert!(matches!(
            decode(png, Some("image/jpeg"), &opts),
            Err(DecodeError::ContentTypeMismatch {
                declared: "image/jpeg",
                detected: Some(MediaType::Png)
            })
        ));
        assert!(matches!(
            decode(b"hello", Some("text/plain"), &opts),
            Err(DecodeError::UnsupportedContentType(_))
        ));
        assert!(matches!(
            decode(b"hello", None, &opts),
            Err(DecodeError::UnknownFormat)
        ));
        assert!(matches!(
            decode(b"", Some("image/png"), &opts),
            Err(DecodeError::ContentTypeMismatch { .. })
        ));
    }

    #[test]
    fn the_byte_limit_is_checked_first() {
        let mut opts = DecodeOptions::default();
        opts.limits.max_bytes = 4;
        assert!(matches!(
            decode(b"\x89PNG\r\n\x1a\n", Some("image/png"), &opts),
            Err(DecodeError::TooLarge { bytes: 8, max: 4 })
        ));
    }
}
