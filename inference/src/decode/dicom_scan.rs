//! A pre-scan of a DICOM body's element lengths, before `dicom-object` parses it.
//!
//! `dicom-parser` allocates and zero-fills each element's *declared* length before reading its
//! value, so a body of a few hundred bytes declaring a 4 GiB Pixel Data would cost 4 GiB
//! (found by the `image_decode` fuzz target). This walk reads only the element headers: the
//! File Meta group (Explicit VR Little Endian), then the data set in its transfer syntax,
//! stepping into sequences and items and over encapsulated pixel-data fragments. Every defined
//! length must fit in the bytes that are left in its enclosing scope. The deflated transfer
//! syntaxes are refused: their lengths are only known after inflating, itself a bomb risk.
//!
//! The walk must visit every header the parser reads, so it reads the body as `dicom-object`
//! 0.10 does (three fuzzed inputs found three places where it did not): the meta group is as
//! long as its group length says, whatever tags it holds; Implicit VR takes "sequence" from the
//! standard dictionary; a delimiter's length is never skipped by the parser, so one that is not
//! zero is refused; a binary number's value is read in whole numbers (2, 4 or 8 bytes), so a
//! length that is not a multiple of the size would leave the parser short of where the scan
//! goes on, and is refused too.

use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

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
const ITEM_DELIMITER: u16 = 0xE00D;
const SEQUENCE_DELIMITER: u16 = 0xE0DD;

const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
/// Deflated Explicit VR Little Endian, JPIP Referenced Deflate, JPIP HTJ2K Referenced Deflate.
const DEFLATED: [&str; 3] = [
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.95",
    "1.2.840.10008.1.2.4.205",
];

const TOO_LONG: DecodeError = DecodeError::Malformed("a DICOM element is longer than the file");
const TRUNCATED_META: DecodeError = DecodeError::Malformed("truncated DICOM file meta information");

/// How the data set encodes its element headers.
#[derive(Clone, Copy)]
struct Syntax {
    explicit_vr: bool,
    big_endian: bool,
}

impl Syntax {
    /// The File Meta group's encoding, and the default data set encoding.
    const EXPLICIT_LE: Syntax = Syntax {
        explicit_vr: true,
        big_endian: false,
    };

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

/// One element header: tag, whether its VR says sequence, value length, header size, and the
/// size of one value of its VR (the parser reads `length / unit` of them).
struct Header {
    tag: (u16, u16),
    sequence: bool,
    length: u32,
    size: usize,
    unit: u32,
}

/// Bytes per value of a binary VR as `dicom-parser` reads it (1 for strings and bytes).
fn unit(vr: VR) -> u32 {
    match vr {
        VR::US | VR::OW | VR::SS => 2,
        VR::AT | VR::UL | VR::OL | VR::SL | VR::FL | VR::OF => 4,
        VR::FD | VR::OD | VR::SV | VR::OV | VR::UV => 8,
        _ => 1,
    }
}

/// The VR the Implicit VR decoder gives a tag: OW for Pixel Data and Overlay Data, else the
/// standard dictionary's (relaxed), else UN.
fn implicit_vr(tag: (u16, u16)) -> VR {
    if tag == PIXEL_DATA || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(Tag(tag.0, tag.1))
        .map_or(VR::UN, |e| e.vr.relaxed())
}

fn header(b: &[u8], at: usize, s: Syntax) -> Option<Header> {
    let tag = (s.u16_at(b, at)?, s.u16_at(b, at + 2)?);
    if tag.0 == 0xFFFE || !s.explicit_vr {
        // Items and delimiters never carry a VR; neither does Implicit VR, where the parser
        // takes it from the standard dictionary (a sequence wherever that says SQ).
        let vr = if tag.0 == 0xFFFE {
            VR::UN
        } else {
            implicit_vr(tag)
        };
        return Some(Header {
            tag,
            sequence: vr == VR::SQ,
            length: s.u32_at(b, at + 4)?,
            size: 8,
            unit: unit(vr),
        });
    }
    let vr_bytes: [u8; 2] = b.get(at + 4..at + 6)?.try_into().ok()?;
    let vr = VR::from_binary(vr_bytes).unwrap_or(VR::UN);
    let (length, size) = if SHORT_VRS.contains(&&vr_bytes) {
        (u32::from(s.u16_at(b, at + 6)?), 8)
    } else {
        (s.u32_at(b, at + 8)?, 12)
    };
    Some(Header {
        tag,
        sequence: vr == VR::SQ,
        length,
        size,
        unit: unit(vr),
    })
}

/// Checks every declared length of `data` (which starts at the `DICM` marker).
pub(super) fn check_lengths(data: &[u8]) -> Result<(), DecodeError> {
    let (at, transfer_syntax) = meta_group(data)?;
    let syntax = match transfer_syntax.as_str() {
        IMPLICIT_VR_LITTLE_ENDIAN => Syntax {
            explicit_vr: false,
            big_endian: false,
        },
        EXPLICIT_VR_BIG_ENDIAN => Syntax {
            explicit_vr: true,
            big_endian: true,
        },
        ts if DEFLATED.contains(&ts) => {
            return Err(DecodeError::Unsupported(
                "deflated DICOM (its element lengths cannot be checked before inflating)".into(),
            ))
        }
        // Explicit VR Little Endian and every encapsulated syntax; the parser refuses the rest.
        _ => Syntax::EXPLICIT_LE,
    };
    scan(data, at, data.len(), syntax, 0)
}

/// Walks the File Meta group as `dicom-object` reads it: a group length element first, then
/// elements (of any group) until that many bytes are read. Returns where the data set starts
/// and the transfer syntax, trimmed as `dicom-object` trims it.
fn meta_group(data: &[u8]) -> Result<(usize, String), DecodeError> {
    let first = header(data, 4, Syntax::EXPLICIT_LE).ok_or(TRUNCATED_META)?;
    if first.tag != (0x0002, 0x0000) || first.length != 4 {
        return Err(DecodeError::Malformed(
            "DICOM file meta information does not start with its group length",
        ));
    }
    let group_length = Syntax::EXPLICIT_LE
        .u32_at(data, 4 + first.size)
        .ok_or(TRUNCATED_META)?;
    let mut at = 4 + first.size + 4;
    let mut read = 0u32;
    let mut transfer_syntax = String::new();
    while read < group_length {
        let h = header(data, at, Syntax::EXPLICIT_LE).ok_or(TRUNCATED_META)?;
        let start = at + h.size;
        let end = start
            .checked_add(h.length as usize)
            .filter(|e| h.length != UNDEFINED && *e <= data.len())
            .ok_or(TOO_LONG)?;
        if h.tag == (0x0002, 0x0010) {
            transfer_syntax = String::from_utf8_lossy(&data[start..end])
                .trim_end_matches(|c: char| c.is_whitespace() || c == '\0')
                .to_owned();
        }
        read = read.saturating_add(h.size as u32).saturating_add(h.length);
        at = end;
    }
    Ok((at, transfer_syntax))
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
        let delimiter = h.tag == (0xFFFE, ITEM_DELIMITER) || h.tag == (0xFFFE, SEQUENCE_DELIMITER);
        if delimiter && h.length != 0 && h.length != UNDEFINED {
            // The parser steps over a delimiter's header only, so the walk would part from it.
            return Err(DecodeError::Malformed("a DICOM delimiter with a length"));
        }
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
        if h.length % h.unit != 0 {
            return Err(DecodeError::Malformed(
                "a DICOM value length that is not a whole number of values",
            ));
        }
        if h.tag == (0xFFFE, SEQUENCE_DELIMITER) {
            fragments = false;
        }
        let nested = if h.tag == (0xFFFE, ITEM) {
            !fragments
        } else {
            h.sequence
        };
        if nested {
            scan(data, start, value_end, s, depth + 1)?;
        }
        at = value_end;
    }
    Ok(())
}
