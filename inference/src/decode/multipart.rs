//! A small, synchronous `multipart/form-data` reader (RFC 7578), enough for what a FastAPI
//! `UploadFile` endpoint accepts (`curl -F file=@xray.jpeg`, `requests.post(files=...)`).
//!
//! Why not `multer`: it is built on async streams (`futures::Stream`) and needs a runtime to
//! drive it, while this runs on the shadow model's worker threads over a body that is already
//! in memory. The whole body is bounded by [`super::Limits::max_bytes`] before we get here, so
//! the parser only borrows slices of it: no copies, no allocation per part.
//!
//! The part is chosen by field name (default `file`), else the first part with a `filename`.
//! At most [`MAX_PARTS`] parts and [`MAX_HEADER_BYTES`] of headers per part are read.

use super::DecodeError;

/// Parts read before giving up.
pub const MAX_PARTS: usize = 32;
/// Header bytes allowed per part.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` of its `Content-Disposition`.
    pub name: Option<&'a str>,
    /// Whether it carried a `filename` (i.e. it is a file upload).
    pub has_filename: bool,
    /// Its `Content-Type`, when given.
    pub content_type: Option<&'a str>,
    /// Its body.
    pub body: &'a [u8],
}

/// Finds the image part of a `multipart/form-data` body.
pub fn file_part<'a>(
    body: &'a [u8],
    content_type: &'a str,
    field: &str,
) -> Result<Part<'a>, DecodeError> {
    let boundary = boundary(content_type)?;
    let parts = parts(body, boundary)?;
    let by_name = parts.iter().find(|p| p.name == Some(field));
    let chosen = by_name.or_else(|| parts.iter().find(|p| p.has_filename));
    chosen
        .cloned()
        .ok_or(DecodeError::Multipart("no file field"))
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<&str, DecodeError> {
    let b = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .ok_or(DecodeError::Multipart("missing boundary"))?;
    if b.is_empty() || b.len() > 70 {
        return Err(DecodeError::Multipart("invalid boundary"));
    }
    Ok(b)
}

/// Splits a body into parts.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, DecodeError> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    // The first delimiter may follow a preamble; later ones follow CRLF.
    let mut pos = find(body, &delimiter).ok_or(DecodeError::Multipart("no boundary in body"))?;
    let next_delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let mut out = Vec::new();
    loop {
        pos += delimiter.len();
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(out); // closing delimiter
        }
        // Transport padding, then CRLF.
        let line_end = find(rest, b"\r\n").ok_or(DecodeError::Multipart("truncated"))?;
        if rest[..line_end].iter().any(|b| !matches!(b, b' ' | b'\t')) {
            return Err(DecodeError::Multipart("garbage after boundary"));
        }
        let start = pos + line_end + 2;
        let part_len = find(&body[start..], &next_delimiter)
            .ok_or(DecodeError::Multipart("truncated (no closing boundary)"))?;
        if out.len() == MAX_PARTS {
            return Err(DecodeError::Multipart("too many parts"));
        }
        out.push(part(&body[start..start + part_len])?);
        pos = start + part_len + 2; // at the "--boundary" after CRLF
    }
}

fn part(raw: &[u8]) -> Result<Part<'_>, DecodeError> {
    let (head, body) = if raw.starts_with(b"\r\n") {
        (&raw[..0], &raw[2..])
    } else {
        let end =
            find(raw, b"\r\n\r\n").ok_or(DecodeError::Multipart("part without headers end"))?;
        (&raw[..end], &raw[end + 4..])
    };
    if head.len() > MAX_HEADER_BYTES {
        return Err(DecodeError::Multipart("part headers too large"));
    }
    let head =
        std::str::from_utf8(head).map_err(|_| DecodeError::Multipart("non-UTF-8 headers"))?;
    let mut p = Part {
        name: None,
        has_filename: false,
        content_type: None,
        body,
    };
    for line in head.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            return Err(DecodeError::Multipart("malformed part header"));
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-type") {
            p.content_type = Some(value.trim());
        } else if key.eq_ignore_ascii_case("content-disposition") {
            for param in value.split(';').skip(1) {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let k = k.trim();
                if k.eq_ignore_ascii_case("name") {
                    p.name = Some(v.trim().trim_matches('"'));
                } else if k.eq_ignore_ascii_case("filename") || k.eq_ignore_ascii_case("filename*")
                {
                    p.has_filename = true;
                }
            }
        }
    }
    Ok(p)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    #[test]
    fn finds_the_file_field_like_fastapi() {
        let body =
            b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--\r\n";
        let p = file_part(body, CT, "file").unwrap();
        assert_eq!(p.name, Some("file"));
        assert!(p.has_filename);
        assert_eq!(p.content_type, Some("image/png"));
        assert_eq!(p.body, b"\x89PNG");
        // Another field name: falls back to the first part with a filename.
        let p = file_part(body, CT, "image").unwrap();
        assert_eq!(p.body, b"\x89PNG");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let missing_end = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc";
        assert!(file_part(missing_end, CT, "file").is_err());
        assert!(file_part(b"nothing here", CT, "file").is_err());
        assert!(file_part(b"--XyZ--", "multipart/form-data", "file").is_err());
        let no_file = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ--";
        assert!(matches!(
            file_part(no_file, CT, "file"),
            Err(DecodeError::Multipart("no file field"))
        ));
        let bad_header = b"--XyZ\r\nnonsense\r\n\r\nx\r\n--XyZ--";
        assert!(file_part(bad_header, CT, "file").is_err());
        // Never panics on arbitrary prefixes of a valid body.
        let good = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nabc\r\n--XyZ--\r\n";
        for n in 0..good.len() {
            let _ = file_part(&good[..n], CT, "file");
        }
    }
}
