//! Durations in Go's `time.ParseDuration` syntax, as Istio writes them:
//! `10s`, `1.5s`, `300ms`, `2m`, `1h30m`, `100us`, `0`.
//!
//! A duration is a sequence of decimal numbers, each with an optional
//! fraction and a unit suffix (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`).
//! Negative durations are rejected: nothing in a policy can be negative.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// A leading minus sign.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// Not `number unit` pairs.
    #[error("invalid duration {0:?} (expected e.g. 10s, 1.5s, 300ms, 1h30m)")]
    Invalid(String),
    /// A number without a unit.
    #[error("missing unit in duration {0:?} (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    /// An unknown unit.
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The unit found.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Larger than `Duration` can hold.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parse a Go-style duration such as `1h30m` or `1.5s`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let s = match s.strip_prefix('+') {
        Some(rest) => rest,
        None if s.starts_with('-') => return Err(DurationError::Negative(input.to_owned())),
        None => s,
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(input.to_owned());
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(input.to_owned())),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_owned(),
                    input: input.to_owned(),
                })
            }
        };
        total_nanos = total_nanos
            .checked_add(component_nanos(number, unit_nanos).ok_or_else(invalid)?)
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_owned()))?;
    // The remainder is below 1e9 and so always fits in u32.
    let nanos = u32::try_from(total_nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one `.`) times `unit_nanos`, exactly for
/// the integer part and truncated to whole nanoseconds for the fraction.
fn component_nanos(number: &str, unit_nanos: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac.chars().take(30) {
        scale /= 10;
        if scale == 0 {
            break;
        }
        value = value.checked_add(u128::from(digit.to_digit(10)?) * scale)?;
    }
    Some(value)
}

/// Format a duration the way Go prints it (`1h30m0s`, `1.5s`, `300ms`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = trim_fraction(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let int = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return int.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("1.5s", Duration::from_millis(1500)),
            ("300ms", Duration::from_millis(300)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            (".5s", Duration::from_millis(500)),
            ("+1m", Duration::from_secs(60)),
            ("1m0.25s", Duration::from_millis(60_250)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("5 sec"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("1..2s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Overflow(_)) | Err(DurationError::Invalid(_))
        ));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
