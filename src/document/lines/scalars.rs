//! Scalars from checked JSON text: integers, doubles, ISO-8601 dates, unescaped strings.

use super::{Bad, Step};
use crate::document::date::parse_iso;

/// The index of the first of the eight bytes of `w` (little-endian) that is `"`, `\` or below
/// 0x20, or 8 when none is.
#[inline]
pub(super) fn first_special(w: u64) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Each mask's lowest set bit marks the first matching byte exactly (a borrow only runs
    // upwards), so the lowest bit of their union is the first special byte.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let mask = zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below_space;
    (mask.trailing_zeros() / 8) as usize
}

pub(super) fn hex_value(d: &[u8]) -> Option<u32> {
    d.iter().try_fold(0u32, |acc, &c| {
        let v = (c as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// The text of a string's raw content (between its quotes, escapes checked), appended.
pub(super) fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let Some(at) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            return;
        };
        out.extend_from_slice(&raw[i..i + at]);
        i += at + 1;
        let Some(&c) = raw.get(i) else { return };
        i += 1;
        let byte = match c {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = raw.get(i..i + 4).and_then(hex_value).unwrap_or(0xFFFD);
                i += 4;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    let low = raw.get(i + 2..i + 6).and_then(hex_value).unwrap_or(0xDC00);
                    i += 6;
                    0x10000 + ((unit - 0xD800) << 10) + (low.saturating_sub(0xDC00) & 0x3FF)
                } else {
                    unit
                };
                let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            other => other,
        };
        out.push(byte);
    }
}

/// An integer's text (checked JSON) as an `i64`, if it fits.
#[inline]
pub(super) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    match negative {
        true if n <= i64::MAX as u64 + 1 => Some((n as i64).wrapping_neg()),
        false if n <= i64::MAX as u64 => Some(n as i64),
        _ => None,
    }
}

/// A number's text (checked JSON) as an `f64`; `None` when it is beyond `f64`'s range.
#[inline]
pub(super) fn parse_f64(text: &[u8]) -> Option<f64> {
    // Exact when the digits fit in 53 bits and the power of ten is exact too: one rounding.
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut scale = 0usize;
    let mut in_fraction = false;
    let mut simple = true;
    for &c in rest {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa.wrapping_mul(10).wrapping_add((c - b'0') as u64);
                digits += 1;
                scale += in_fraction as usize;
            }
            b'.' => in_fraction = true,
            _ => {
                simple = false;
                break;
            }
        }
    }
    if simple && digits <= 15 && scale < POW10.len() {
        let x = mantissa as f64 / POW10[scale];
        return Some(if negative { -x } else { x });
    }
    let x: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    x.is_finite().then_some(x)
}

/// An ISO-8601 date's milliseconds: the common `YYYY-MM-DDTHH:MM:SS[.fff]Z` by hand, anything
/// else as [`parse_iso`] reads it.
pub(super) fn iso_millis(text: &[u8]) -> Option<i64> {
    fn num(d: &[u8]) -> Option<i64> {
        d.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as i64)
        })
    }
    let fast = (|| {
        let t = text.strip_suffix(b"Z")?;
        if t.len() < 19 || t[4] != b'-' || t[7] != b'-' || t[10] != b'T' || t[13] != b':' {
            return None;
        }
        if t[16] != b':' {
            return None;
        }
        let (year, month, day) = (num(&t[0..4])?, num(&t[5..7])?, num(&t[8..10])?);
        let (hour, minute, second) = (num(&t[11..13])?, num(&t[14..16])?, num(&t[17..19])?);
        let millis = match &t[19..] {
            [] => 0,
            [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
                let mut ms = num(frac)?;
                for _ in frac.len()..3 {
                    ms *= 10;
                }
                for _ in 3..frac.len() {
                    ms /= 10;
                }
                ms
            }
            _ => return None,
        };
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
    })();
    fast.or_else(|| parse_iso(std::str::from_utf8(text).ok()?))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The JSON text of an object or array (checked) as a mixed field holds it: compact, as
/// `serde_json` writes it.
pub(super) fn json_text(span: &[u8], start: usize) -> Step<String> {
    serde_json::from_slice::<serde_json::Value>(span)
        .map(|v| v.to_string())
        .map_err(|e| Bad::Malformed(format!("at column {}: {e}", start + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_read_by_hand_agree_with_the_general_parser() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2026-03-01T10:00:00.250Z",
            "2024-02-29T23:59:59.999999999Z",
            "1900-03-01T00:00:00.1Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.99Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            assert_eq!(iso_millis(text.as_bytes()), parse_iso(text), "{text}");
        }
        assert_eq!(
            iso_millis(b"2023-02-29T00:00:00Z"),
            parse_iso("2023-02-29T00:00:00Z")
        );
    }

    #[test]
    fn numbers_read_as_the_standard_parser_reads_them() {
        for text in [
            "0",
            "-0",
            "12.5",
            "0.1",
            "1548.47",
            "123456789012345",
            "1.7976931348623157e308",
            "5e-324",
            "0.30000000000000004",
            "9007199254740993",
            "1234567890.123456789",
        ] {
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                parse_f64(text.as_bytes()).map(f64::to_bits),
                Some(want.to_bits()),
                "{text}"
            );
        }
        assert_eq!(parse_f64(b"1e400"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
    }
}
