//! `application/json` bodies that carry a base64 image at a JSON pointer (default `/image`),
//! e.g. `{"image": "iVBORw0KGgo..."}` or a `data:image/png;base64,...` URL.
//!
//! The decoded size is estimated from the base64 length and checked against the byte limit
//! before decoding. Standard and URL-safe alphabets are accepted, padded or not.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::{DecodeError, Limits};

const CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);

/// Extracts and base64-decodes the image at `pointer`.
pub fn image_bytes(body: &[u8], pointer: &str, limits: &Limits) -> Result<Vec<u8>, DecodeError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| DecodeError::Json(format!("invalid JSON: {e}")))?;
    let text = value
        .pointer(pointer)
        .ok_or_else(|| DecodeError::Json(format!("nothing at {pointer}")))?
        .as_str()
        .ok_or_else(|| DecodeError::Json(format!("{pointer} is not a string")))?;
    let text = match text.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => text,
    };
    let text = text.trim();
    let estimate = text.len() / 4 * 3 + 3;
    if estimate > limits.max_bytes + 3 {
        return Err(DecodeError::TooLarge {
            bytes: estimate,
            max: limits.max_bytes,
        });
    }
    let url_safe = text.contains(['-', '_']);
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    engine
        .decode(text)
        .map_err(|_| DecodeError::Json(format!("{pointer} is not valid base64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_data_url_base64() {
        let l = Limits::default();
        assert_eq!(
            image_bytes(br#"{"image": "aGVsbG8="}"#, "/image", &l).unwrap(),
            b"hello"
        );
        assert_eq!(
            image_bytes(
                br#"{"a": {"b": "data:image/png;base64,aGVsbG8"}}"#,
                "/a/b",
                &l
            )
            .unwrap(),
            b"hello"
        );
    }

    #[test]
    fn rejects_bad_bodies() {
        let l = Limits::default();
        assert!(image_bytes(b"{", "/image", &l).is_err());
        assert!(image_bytes(br#"{"image": 3}"#, "/image", &l).is_err());
        assert!(image_bytes(br#"{"x": "aGVsbG8="}"#, "/image", &l).is_err());
        assert!(image_bytes(br#"{"image": "!!!"}"#, "/image", &l).is_err());
        let tiny = Limits {
            max_bytes: 2,
            ..Limits::default()
        };
        assert!(matches!(
            image_bytes(br#"{"image": "aGVsbG8gd29ybGQ="}"#, "/image", &tiny),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
