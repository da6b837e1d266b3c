//! A pre-scan of a DICOM body's element lengths, before `dicom-object` parses it.
//!
//! `dicom-parser` allocates and zero-fills each element's *declared* length before reading its
//! value, so a body of a few hundred bytes declaring a 4 GiB Pixel Data would cost 4 GiB
//! (found by the `image_decode` fuzz target). This walk reads only the element headers: the
//! File Meta group (Explicit VR Little Endian), then the data set in its transfer syntax,
//! stepping into sequences and items and over encapsulated pixel-data fragments. Every defined
//! length must fit in the bytes that are left in its enclosing scope. The Deflated transfer
//! syntax is refused: its lengths are only known after inflating, which is itself a bomb risk.

use super::DecodeError;

/// Explicit VRs with a 2-byte length (PS3.5 Table 7.1-2). Every other VR, and any pair of
/// bytes that is not a VR, has a 2-byte reserved field and a 4-byte length: `dicom-parser` reads
/// an unknown VR as UN, so the scan must too (a fuzzed `\0\0` VR once slipped through as short).
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];
/// The undefined length of sequences, items and encapsulated pixel data.
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Nested sequences deeper than this are refused (real files nest a handful).
const MAX_DEPTH: usize = 32;
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
const ITEM: u16 = 0xE000;
const SEQUENCE_DELIMITER: u16 = 0xE0DD;

const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";

const TOO_LONG: DecodeError = DecodeError::Malformed("a DICOM element is longer than the file");

/// How the data set encodes its element headers.
#[derive(Clone, Copy)]
struct Syntax {
    explicit_vr: bool,
    big_endian: bool,
}

impl Syntax {
    fn u16_at(self, b: &[u8], at: usize) -> Option<u16> {
        let v: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        })
    }

    fn u32_at(self, b: &[u8], at: usize) -> Option<u32> {
        let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        })
    }
}

/// One element header: tag, whether its VR says sequence, value length, header size.
struct Header {
    tag: (u16, u16),
    sequence: bool,
    length: u32,
    size: usize,
}

fn header(b: &[u8], at: usize, s: Syntax) -> Option<Header> {
    let tag = (s.u16_at(b, at)?, s.u16_at(b, at + 2)?);
    if tag.0 == 0xFFFE || !s.explicit_vr {
        // Items and delimiters never carry a VR; neither does Implicit VR.
        return Some(Header {
            tag,
            sequence: false,
            length: s.u32_at(b, at + 4)?,
            size: 8,
        });
    }
    let vr = b.get(at + 4..at + 6)?;
    let sequence = vr == b"SQ";
    if SHORT_VRS.iter().any(|v| v.as_slice() == vr) {
        Some(Header {
            tag,
            sequence,
            length: u32::from(s.u16_at(b, at + 6)?),
            size: 8,
        })
    } else {
        Some(Header {
            tag,
            sequence,
            length: s.u32_at(b, at + 8)?,
            size: 12,
        })
    }
}

/// Checks every declared length of `data` (which starts at the `DICM` marker).
pub(super) fn check_lengths(data: &[u8]) -> Result<(), DecodeError> {
    let meta = Syntax {
        explicit_vr: true,
        big_endian: false,
    };
    let mut at = 4; // after "DICM"
    let mut transfer_syntax = String::new();
    while data.get(at..at + 2) == Some(&[0x02, 0x00]) {
        let h = header(data, at, meta).ok_or(DecodeError::Malformed(
            "truncated DICOM file meta information",
        ))?;
        let start = at + h.size;
        let end = start
            .checked_add(h.length as usize)
            .filter(|e| h.length != UNDEFINED && *e <= data.len())
            .ok_or(TOO_LONG)?;
        if h.tag == (0x0002, 0x0010) {
            transfer_syntax = String::from_utf8_lossy(&data[start..end])
                .trim_end_matches(['\0', ' '])
                .to_owned();
        }
        at = end;
    }
    let syntax = match transfer_syntax.as_str() {
        IMPLICIT_VR_LITTLE_ENDIAN => Syntax {
            explicit_vr: false,
            big_endian: false,
        },
        EXPLICIT_VR_BIG_ENDIAN => Syntax {
            explicit_vr: true,
            big_endian: true,
        },
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN => {
            return Err(DecodeError::Unsupported(
                "deflated DICOM (its element lengths cannot be checked before inflating)".into(),
            ))
        }
        _ => meta, // Explicit VR Little Endian, and every encapsulated (compressed) syntax
    };
    scan(data, at, data.len(), syntax, 0)
}

/// Walks the elements of `data[at..end]`, stepping into sequences and items.
fn scan(
    data: &[u8],
    mut at: usize,
    end: usize,
    s: Syntax,
    depth: usize,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Malformed("DICOM sequences nested too deep"));
    }
    // Inside encapsulated pixel data, items are compressed fragments, not data sets.
    let mut fragments = false;
    while at < end {
        let Some(h) = header(data, at, s).filter(|h| at + h.size <= end) else {
            // A header cut short by the end: the parser fails on it without allocating.
            return Ok(());
        };
        let start = at + h.size;
        if h.length == UNDEFINED {
            // Its content follows as elements (or fragments) up to a delimiter.
            fragments |= h.tag == PIXEL_DATA;
            if h.tag == (0xFFFE, SEQUENCE_DELIMITER) {
                fragments = false;
            }
            at = start;
            continue;
        }
        let value_end = start
            .checked_add(h.length as usize)
            .filter(|e| *e <= end)
            .ok_or(TOO_LONG)?;
        if h.tag == (0xFFFE, SEQUENCE_DELIMITER) {
            fragments = false;
        }
        let nested = if h.tag == (0xFFFE, ITEM) {
            !fragments
        } else {
            // Implicit VR has no VR to say "sequence": a value that starts with an item tag is one.
            h.sequence
                || (!s.explicit_vr
                    && h.length >= 8
                    && s.u16_at(data, start) == Some(0xFFFE)
                    && s.u16_at(data, start + 2) == Some(ITEM))
        };
        if nested {
            scan(data, start, value_end, s, depth + 1)?;
        }
        at = value_end;
    }
    Ok(())
}
