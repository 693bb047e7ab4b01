//! Strict JSON lines: every line is checked against the JSON grammar (RFC 8259) and, where the
//! target shape asks for it, rewritten into the text Arrow's JSON decoder reads — in one pass,
//! without building a document.
//!
//! Arrow's tape decoder is fast but lenient: it skips repeated or missing commas
//! (`{"a": 1,, "b": 2}`, `[1 2]`) and reads several values on one line as several rows. So no
//! line reaches it unchecked: this module is the gate. A line is one JSON object, or blank;
//! anything else is reported with its line index, byte offset and why, and left out.
//!
//! The same pass does the rewriting Fluxion's type rules need (see [`Shape`]):
//! - under a `Date` shape an extended JSON date (`{"$date": "…"}`, `{"$date": ms}`,
//!   `{"$date": {"$numberLong": "ms"}}`) becomes its milliseconds since the epoch;
//! - under a `Text` shape an object or an array becomes a string holding its JSON text.
//!
//! Spans that need no rewrite are copied in bulk, and input that needs none is not copied.

use std::borrow::Cow;

use indexmap::IndexMap;

use super::date::parse_iso;
use super::infer::Shape;

/// A line that is not one JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// Index of the line in the input (0-based).
    pub line: usize,
    /// Byte offset of the line's first byte in the input.
    pub offset: usize,
    /// The line's length, without its newline.
    pub len: usize,
    /// Why it was rejected, e.g. `not valid JSON: expected ',' or '}' at column 12`.
    pub reason: String,
    /// True when the line is not a JSON object at all; false when it is one that does not fit
    /// the schema (a wrong type, a field an inferred schema lacks).
    pub malformed: bool,
}

/// The checked text: the valid lines (rewritten where the shape needs it), one per line, and
/// the lines left out.
#[derive(Debug)]
pub struct Checked<'a> {
    pub text: Cow<'a, [u8]>,
    pub invalid: Vec<Invalid>,
    /// Documents in `text`.
    pub documents: usize,
}

/// Checks every line of `data` and rewrites values for `shape` (the documents' shape, an
/// object; `None` checks only).
pub fn check<'a>(data: &'a [u8], shape: Option<&Shape>) -> Checked<'a> {
    let fields = match shape {
        Some(s @ Shape::Object(fields)) if s.needs_rewrite() => Some(fields),
        _ => None,
    };
    let rewrite = fields.is_some();
    let mut out: Vec<u8> = Vec::new();
    if rewrite {
        out.reserve(data.len());
    }
    let mut invalid = Vec::new();
    let mut documents = 0usize;
    // UTF-8 is checked once for the whole input; only a failure looks line by line.
    let mut utf8_error_at = std::str::from_utf8(data).err().map(|e| e.valid_up_to());
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let line = &data[start..end];
        let verdict = if utf8_error_at.is_some_and(|at| at < end) {
            match std::str::from_utf8(line) {
                Ok(_) => None,
                Err(e) => Some(format!("not valid UTF-8 at column {}", e.valid_up_to() + 1)),
            }
        } else {
            None
        };
        if utf8_error_at.is_some_and(|at| at < end) {
            let rest = &data[(end + 1).min(data.len())..];
            utf8_error_at = std::str::from_utf8(rest)
                .err()
                .map(|e| end + 1 + e.valid_up_to());
        }
        let result = match verdict {
            Some(reason) => Err(reason),
            None => {
                let mark = out.len();
                let mut p = Parser {
                    s: line,
                    i: 0,
                    out: rewrite.then_some(&mut out),
                    copied: 0,
                };
                match p.line(fields) {
                    Ok(false) => Ok(false),
                    Ok(true) => {
                        p.finish();
                        Ok(true)
                    }
                    Err(e) => {
                        out.truncate(mark);
                        Err(e)
                    }
                }
            }
        };
        match result {
            Ok(false) => {}
            Ok(true) => {
                documents += 1;
                if rewrite {
                    out.push(b'\n');
                } else if !invalid.is_empty() {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
            Err(reason) => {
                if !rewrite && invalid.is_empty() {
                    // The first bad line: from here on the good lines are copied.
                    out.reserve(data.len());
                    out.extend_from_slice(&data[..start]);
                }
                invalid.push(Invalid {
                    line: line_no,
                    offset: start,
                    len: line.len(),
                    reason,
                    malformed: true,
                });
            }
        }
        start = end + 1;
        line_no += 1;
    }
    let text = if rewrite || !invalid.is_empty() {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(data)
    };
    Checked {
        text,
        invalid,
        documents,
    }
}

/// A recursive-descent check of one line, copying it to `out` (when rewriting) with the
/// rewritten spans replaced.
struct Parser<'s, 'o> {
    s: &'s [u8],
    i: usize,
    out: Option<&'o mut Vec<u8>>,
    /// Input bytes before this index are already in `out`.
    copied: usize,
}

type Step<T = ()> = std::result::Result<T, String>;

/// How deep documents may nest (MongoDB allows 100 levels; deeper input would only exhaust
/// the stack).
const MAX_DEPTH: usize = 128;

impl<'s> Parser<'s, '_> {
    /// The whole line: blank (`false`) or one object and nothing after it (`true`).
    fn line(&mut self, fields: Option<&IndexMap<String, Shape>>) -> Step<bool> {
        self.ws();
        match self.peek() {
            None => return Ok(false),
            Some(b'{') => {}
            Some(_) => {
                // Say what it is when it is JSON at all.
                self.value(None, 0)
                    .map_err(|e| format!("not valid JSON: {e}"))?;
                return Err("expected a JSON object (one document per line)".into());
            }
        }
        self.i += 1;
        self.object(fields, 1)
            .map_err(|e| format!("not valid JSON: {e}"))?;
        self.ws();
        if self.i < self.s.len() {
            return Err(format!(
                "not valid JSON: trailing characters at column {}",
                self.i + 1
            ));
        }
        Ok(true)
    }

    /// Copies what is left of the line.
    fn finish(&mut self) {
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(&self.s[self.copied..]);
        }
    }

    /// Replaces input `from..self.i` by `with` in the output.
    fn replace(&mut self, from: usize, with: &[u8]) {
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(&self.s[self.copied..from]);
            out.extend_from_slice(with);
            self.copied = self.i;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expected(&self, what: &str) -> String {
        match self.peek() {
            None => format!("expected {what} at the end of the line"),
            Some(_) => format!("expected {what} at column {}", self.i + 1),
        }
    }

    fn value(&mut self, shape: Option<&Shape>, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested more than {MAX_DEPTH} levels deep at column {}",
                self.i + 1
            ));
        }
        let start = self.i;
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                match shape {
                    Some(Shape::Date) if self.out.is_some() => self.date(start),
                    Some(Shape::Text { complex: true }) if self.out.is_some() => {
                        self.object(None, depth + 1)?;
                        self.as_text(start)
                    }
                    Some(Shape::Object(fields)) => self.object(Some(fields), depth + 1),
                    _ => self.object(None, depth + 1),
                }
            }
            Some(b'[') => {
                self.i += 1;
                match shape {
                    Some(Shape::Text { complex: true }) if self.out.is_some() => {
                        self.array(None, depth + 1)?;
                        self.as_text(start)
                    }
                    Some(Shape::Array(elem)) => self.array(Some(elem), depth + 1),
                    _ => self.array(None, depth + 1),
                }
            }
            Some(b'"') => {
                self.i += 1;
                self.string().map(|_| ())
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.expected("a value")),
        }
    }

    /// The members of an object whose `{` was read.
    fn object(&mut self, fields: Option<&IndexMap<String, Shape>>, depth: usize) -> Step {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.expected("a field name in double quotes"));
            }
            self.i += 1;
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.expected("':'"));
            }
            self.i += 1;
            self.ws();
            let child = match (fields, key) {
                (Some(fields), Key::Plain(k)) => {
                    // Keys are ASCII or checked UTF-8 already.
                    std::str::from_utf8(k).ok().and_then(|k| fields.get(k))
                }
                (Some(fields), Key::Escaped(k)) => fields.get(&k),
                (None, _) => None,
            };
            self.value(child, depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.expected("',' or '}'")),
            }
        }
    }

    /// The elements of an array whose `[` was read.
    fn array(&mut self, elem: Option<&Shape>, depth: usize) -> Step {
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(elem, depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.expected("',' or ']'")),
            }
        }
    }

    /// The rest of a string whose opening quote was read: its raw bytes, or its unescaped
    /// text when it has escapes.
    fn string(&mut self) -> Step<Key<'s>> {
        let begin = self.i;
        let mut escaped = false;
        loop {
            // The common case: a run of plain bytes.
            let rest = &self.s[self.i..];
            let run = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or_else(|| {
                    self.i = self.s.len();
                    "unterminated string at the end of the line".to_string()
                })?;
            self.i += run;
            match self.s[self.i] {
                b'"' => {
                    let raw = &self.s[begin..self.i];
                    self.i += 1;
                    if !escaped {
                        return Ok(Key::Plain(raw));
                    }
                    // Escapes were checked: serde unescapes them.
                    let quoted = &self.s[begin - 1..self.i];
                    return serde_json::from_slice::<String>(quoted)
                        .map(Key::Escaped)
                        .map_err(|e| format!("bad string at column {begin}: {e}"));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => {
                    return Err(format!(
                        "control character in a string at column {}",
                        self.i + 1
                    ));
                }
            }
        }
    }

    /// One escape sequence, at its backslash.
    fn escape(&mut self) -> Step {
        let at = self.i + 1;
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                let unit = self.hex4()?;
                if (0xDC00..0xE000).contains(&unit) {
                    return Err(format!("lone low surrogate in an escape at column {at}"));
                }
                if (0xD800..0xDC00).contains(&unit) {
                    if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                        return Err(format!("lone high surrogate in an escape at column {at}"));
                    }
                    self.i += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(format!("lone high surrogate in an escape at column {at}"));
                    }
                }
                Ok(())
            }
            _ => Err(format!("invalid escape at column {at}")),
        }
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| {
                u32::from_str_radix(d, 16)
                    .ok()
                    .filter(|_| !d.starts_with('+'))
            })
            .ok_or_else(|| format!("expected four hex digits at column {}", self.i + 1))?;
        self.i += 4;
        Ok(digits)
    }

    /// A number (JSON's grammar: no leading zeros, no `+`, digits on both sides of `.`);
    /// returns its text.
    fn number(&mut self) -> Step<&'s [u8]> {
        let begin = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.expected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit in the exponent"));
            }
            self.digits();
        }
        Ok(&self.s[begin..self.i])
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.expected("a value"))
        }
    }

    /// An extended JSON date whose `{` (at `start`) was read, rewritten to milliseconds.
    fn date(&mut self, start: usize) -> Step {
        let not_a_date = || {
            format!(
                "expected a date ({{\"$date\": …}}) at column {}, found another object",
                start + 1
            )
        };
        self.ws();
        if self.peek() != Some(b'"') {
            self.i = start + 1;
            self.object(None, 1)?;
            return Err(not_a_date());
        }
        self.i += 1;
        let is_date = matches!(self.string()?, Key::Plain(b"$date"));
        if !is_date {
            self.i = start + 1;
            self.object(None, 1)?;
            return Err(not_a_date());
        }
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.expected("':'"));
        }
        self.i += 1;
        self.ws();
        let at = self.i + 1;
        let ms = match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let text = match self.string()? {
                    Key::Plain(b) => String::from_utf8_lossy(b).into_owned(),
                    Key::Escaped(s) => s,
                };
                parse_iso(&text).ok_or_else(|| {
                    format!(
                        "\"{text}\" at column {at} is not an ISO-8601 date (e.g. \"2026-03-01T10:00:00Z\")"
                    )
                })?
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                std::str::from_utf8(n)
                    .ok()
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "{} at column {at} is not a whole number of milliseconds",
                            String::from_utf8_lossy(n)
                        )
                    })?
            }
            Some(b'{') => {
                self.i += 1;
                self.number_long(at)?
            }
            _ => {
                self.value(None, 1)?;
                return Err(format!(
                    "the date at column {at}: expected an ISO-8601 string or milliseconds since the epoch"
                ));
            }
        };
        self.ws();
        if self.peek() != Some(b'}') {
            return Err(self.expected("'}' closing the date"));
        }
        self.i += 1;
        self.replace(start, itoa_buf(ms).as_bytes());
        Ok(())
    }

    /// `"$numberLong": "<ms>"}` after the `{` of a date's operand.
    fn number_long(&mut self, at: usize) -> Step<i64> {
        let bad =
            || format!("the date at column {at}: expected {{\"$numberLong\": \"<milliseconds>\"}}");
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(bad());
        }
        self.i += 1;
        if !matches!(self.string()?, Key::Plain(b"$numberLong")) {
            return Err(bad());
        }
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.expected("':'"));
        }
        self.i += 1;
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(bad());
        }
        self.i += 1;
        let ms = match self.string()? {
            Key::Plain(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok()),
            Key::Escaped(s) => s.parse::<i64>().ok(),
        }
        .ok_or_else(|| format!("the date at column {at}: $numberLong is not an integer"))?;
        self.ws();
        if self.peek() != Some(b'}') {
            return Err(bad());
        }
        self.i += 1;
        Ok(ms)
    }

    /// Replaces the value at `start..self.i` (checked) by a string of its JSON text.
    fn as_text(&mut self, start: usize) -> Step {
        let value: serde_json::Value = serde_json::from_slice(&self.s[start..self.i])
            .map_err(|e| format!("at column {}: {e}", start + 1))?;
        let text = serde_json::to_string(&serde_json::Value::String(value.to_string()))
            .map_err(|e| e.to_string())?;
        self.replace(start, text.as_bytes());
        Ok(())
    }
}

/// A string as read: its raw bytes when it has no escapes, else its text.
enum Key<'s> {
    Plain(&'s [u8]),
    Escaped(String),
}

/// The decimal text of `n`, without allocating.
fn itoa_buf(n: i64) -> ItoaBuf {
    let mut buf = ItoaBuf {
        bytes: [0; 20],
        start: 20,
    };
    let negative = n < 0;
    let mut m = n.unsigned_abs();
    loop {
        buf.start -= 1;
        buf.bytes[buf.start] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if negative {
        buf.start -= 1;
        buf.bytes[buf.start] = b'-';
    }
    buf
}

struct ItoaBuf {
    // i64::MIN has 19 digits and a sign.
    bytes: [u8; 20],
    start: usize,
}

impl ItoaBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(data: &str) -> Vec<(usize, String)> {
        check(data.as_bytes(), None)
            .invalid
            .into_iter()
            .map(|i| (i.line, i.reason))
            .collect()
    }

    #[test]
    fn accepts_what_serde_accepts() {
        let good = [
            r#"{}"#,
            r#"  {"a": 1, "b": [1, 2.5e-3, -0, true, false, null], "c": {"d": "x\"\\\u00e9\ud83d\ude00"}}  "#,
            "{\"a\":\"tab\\t\"}\r",
            r#"{"n": -12.5E+10, "z": 0.0}"#,
        ];
        for line in good {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{line}"
            );
            let c = check(line.as_bytes(), None);
            assert!(c.invalid.is_empty(), "{line}: {:?}", c.invalid);
            assert_eq!(c.documents, 1);
        }
    }

    #[test]
    fn rejects_what_the_lenient_decoder_would_read() {
        let bad = [
            r#"{"customerId": -1, "status": "PAID", "orderValue": 12.5,,}"#,
            r#"{"status": "PAID",, "orderValue": 1}"#,
            r#"{"a": 1 "b": 2}"#,
            r#"{"a": [1 2]}"#,
            r#"{"a": [1,]}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 1} {"a": 2}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": +1}"#,
            r#"{"a": 1-2}"#,
            r#"{"a": tru}"#,
            r#"{"a": "x\q"}"#,
            r#"{"a": "\ud800"}"#,
            "{\"a\": \"raw\tcontrol\"}",
            r#"{"a": "open}"#,
            r#"{"a" 1}"#,
            r#"{a: 1}"#,
            r#"{"a": 1"#,
            r#"[1, 2]"#,
            r#""text""#,
        ];
        for line in bad {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_err() || !line.starts_with('{'),
                "{line}"
            );
            let r = reasons(line);
            assert_eq!(r.len(), 1, "{line} was accepted");
        }
        assert_eq!(
            reasons(r#"{"customerId": -1, "status": "PAID", "orderValue": 12.5,,}"#)[0].1,
            "not valid JSON: expected a field name in double quotes at column 57"
        );
        assert_eq!(
            reasons("[1, 2]")[0].1,
            "expected a JSON object (one document per line)"
        );
    }

    #[test]
    fn reports_each_bad_line_and_keeps_the_good_ones() {
        let data = "{\"a\": 1}\n\n{\"a\": 2,,}\n{\"a\": 3}\n\u{0}\n";
        let c = check(data.as_bytes(), None);
        assert_eq!(c.documents, 2);
        // Blank lines before the first bad one stay (the decoder skips them).
        assert_eq!(c.text.as_ref(), b"{\"a\": 1}\n\n{\"a\": 3}\n");
        let lines: Vec<_> = c
            .invalid
            .iter()
            .map(|i| (i.line, i.offset, i.len))
            .collect();
        assert_eq!(lines, [(2, 10, 10), (4, 30, 1)]);
        // Valid input is not copied.
        assert!(matches!(
            check(b"{\"a\": 1}\n", None).text,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn invalid_utf8_is_pinned_to_its_line() {
        let mut data = b"{\"a\": \"ok\"}\n{\"a\": \"".to_vec();
        data.extend_from_slice(&[0xff, 0xfe]);
        data.extend_from_slice(b"\"}\n{\"a\": \"fine\"}\n");
        let c = check(&data, None);
        assert_eq!(c.documents, 2);
        assert_eq!(c.invalid.len(), 1);
        assert_eq!(c.invalid[0].line, 1);
        assert!(c.invalid[0].reason.contains("UTF-8"), "{:?}", c.invalid);
    }

    #[test]
    fn rewrites_dates_and_text_for_the_shape() {
        let shape = Shape::of(&json!({"at": {"$date": 1}, "v": {"k": 1}, "n": 1}))
            .merge(Shape::of(&json!({"v": 3})));
        let data = concat!(
            r#"{"at": {"$date": "1970-01-01T00:00:01.5Z"}, "v": {"k": [1, 2]}, "n": 1}"#,
            "\n",
            r#"{"n": 2, "at": {"$date": {"$numberLong": "-7"}}, "v": 3}"#,
            "\n",
            r#"{"at": {"$date": 12}, "v": "s"}"#,
            "\n",
            r#"{"at": {"$date": "not a date"}}"#,
            "\n",
            r#"{"at": {"$date": 1.5}}"#,
            "\n",
            r#"{"at": {"when": 1}}"#,
            "\n",
        );
        let c = check(data.as_bytes(), Some(&shape));
        let text = String::from_utf8(c.text.into_owned()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"at": 1500, "v": "{\"k\":[1,2]}", "n": 1}"#,
                "\n",
                r#"{"n": 2, "at": -7, "v": 3}"#,
                "\n",
                r#"{"at": 12, "v": "s"}"#,
                "\n",
            )
        );
        let reasons: Vec<_> = c
            .invalid
            .iter()
            .map(|i| (i.line, i.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].1.contains("is not an ISO-8601 date"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("whole number"), "{reasons:?}");
        assert!(reasons[2].1.contains("expected a date"), "{reasons:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let line = format!("{{\"a\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let r = reasons(&line);
        assert!(r[0].1.contains("nested more than"), "{r:?}");
    }

    #[test]
    fn numbers_print_without_allocating() {
        for n in [0, 7, -7, 1772359200250, i64::MIN, i64::MAX] {
            assert_eq!(itoa_buf(n).as_bytes(), n.to_string().as_bytes());
        }
    }
}
