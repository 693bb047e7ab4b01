//! One line, parsed against the JSON grammar, its values appended to the columns as they are
//! read; values the reader does not keep are only checked.

use super::columns::{Col, ListCol, StructCol, text_end};
use super::scalars::{
    first_special, hex_value, iso_millis, json_text, parse_f64, parse_i64, unescape,
};
use super::{Bad, MAX_DEPTH, Step};

/// One line being read.
pub(super) struct Parser<'s, 'b> {
    pub(super) s: &'s [u8],
    pub(super) i: usize,
    pub(super) strict: bool,
    /// Unescaped field names.
    pub(super) scratch: &'b mut Vec<u8>,
}

impl<'s> Parser<'s, '_> {
    /// The whole line into `root`: blank (`false`) or one object and nothing after it.
    pub(super) fn document(&mut self, root: &mut StructCol) -> Step<bool> {
        self.ws();
        match self.peek() {
            None => return Ok(false),
            Some(b'{') => {}
            Some(_) => return Err(Bad::Malformed(self.not_an_object())),
        }
        self.i += 1;
        self.object(root, 1).map_err(|bad| match bad {
            Bad::Malformed(m) => Bad::Malformed(format!("not valid JSON: {m}")),
            unfit => unfit,
        })?;
        self.ws();
        if self.i < self.s.len() {
            return Err(Bad::Malformed(format!(
                "not valid JSON: trailing characters at column {}",
                self.i + 1
            )));
        }
        Ok(true)
    }

    /// Checks the whole line as JSON only.
    pub(super) fn validate(&mut self) -> std::result::Result<(), String> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(self.not_an_object());
        }
        self.skip(0)
            .and_then(|()| {
                self.ws();
                match self.i < self.s.len() {
                    true => Err(Bad::Malformed(format!(
                        "trailing characters at column {}",
                        self.i + 1
                    ))),
                    false => Ok(()),
                }
            })
            .map_err(|bad| format!("not valid JSON: {}", bad.reason()))
    }

    /// Why a line that does not start with `{` is refused: say what it is when it is JSON.
    fn not_an_object(&mut self) -> String {
        match self.skip(0) {
            Ok(()) => "expected a JSON object (one document per line)".into(),
            Err(bad) => format!("not valid JSON: {}", bad.reason()),
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

    /// After a member or an element: a `,` (more follow: `false`) or the closing `close`
    /// (`true`), each with the blanks after it.
    fn more_or_close(&mut self, close: u8) -> Step<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.ws();
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            _ if close == b'}' => Err(self.expected("',' or '}'")),
            _ => Err(self.expected("',' or ']'")),
        }
    }

    /// The `:` after a field name (and the blanks around it).
    fn colon(&mut self) -> Step {
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.expected("':'"));
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    fn expected(&self, what: &str) -> Bad {
        Bad::Malformed(match self.peek() {
            None => format!("expected {what} at the end of the line"),
            Some(_) => format!("expected {what} at column {}", self.i + 1),
        })
    }

    fn too_deep(&self, depth: usize) -> Step {
        match depth > MAX_DEPTH {
            true => Err(Bad::Malformed(format!(
                "nested more than {MAX_DEPTH} levels deep at column {}",
                self.i + 1
            ))),
            false => Ok(()),
        }
    }

    /// A value that `col` does not take, at `start`: checked as JSON, then refused.
    fn unfit(&mut self, col: &Col, start: usize, depth: usize) -> Bad {
        self.i = start;
        let found = match self.peek() {
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        let found = match (col, found) {
            (Col::Int { .. }, "a number") => "a number that is not a 64-bit integer",
            (Col::Date { .. }, "a number") => "a number that is not whole milliseconds",
            _ => found,
        };
        if let Err(bad) = self.skip(depth) {
            return bad;
        }
        Bad::unfit(format!(
            "expected {}, found {found} at column {}",
            col.wants(),
            start + 1
        ))
    }

    /// The value at the cursor into `col`.
    fn value(&mut self, col: &mut Col, depth: usize) -> Step {
        let start = self.i;
        match (self.peek(), &mut *col) {
            (
                Some(b'"'),
                Col::Str {
                    offsets,
                    bytes,
                    valid,
                    ..
                },
            ) => {
                self.i += 1;
                self.string_into(bytes)?;
                offsets.push(text_end(bytes)?);
                valid.append_non_null();
                Ok(())
            }
            (Some(b'-' | b'0'..=b'9'), _) => self.number_into(col, depth),
            (Some(b'{'), Col::Struct(s)) => {
                self.too_deep(depth)?;
                self.i += 1;
                self.object(s, depth + 1)
            }
            (Some(b'['), Col::List(l)) => {
                self.too_deep(depth)?;
                self.i += 1;
                self.array(l, depth + 1)
            }
            (Some(b'n'), _) => {
                self.literal(b"null")?;
                col.push_null();
                Ok(())
            }
            (Some(b't'), Col::Bool { values, valid }) => {
                self.literal(b"true")?;
                values.append(true);
                valid.append_non_null();
                Ok(())
            }
            (Some(b'f'), Col::Bool { values, valid }) => {
                self.literal(b"false")?;
                values.append(false);
                valid.append_non_null();
                Ok(())
            }
            (Some(b't'), Col::Str { .. }) => {
                self.literal(b"true")?;
                col.push_str(b"true")
            }
            (Some(b'f'), Col::Str { .. }) => {
                self.literal(b"false")?;
                col.push_str(b"false")
            }
            (Some(b'{'), Col::Date { .. }) => {
                self.too_deep(depth)?;
                self.i += 1;
                let ms = self.date(start)?;
                push_date(col, ms);
                Ok(())
            }
            // Under an inferred schema a date column holds only extended JSON dates (a string
            // or a number beside them makes the field mixed); a declared one reads them too.
            (Some(b'"'), Col::Date { .. }) if !self.strict => {
                self.i += 1;
                let at = self.i;
                let mut text = Vec::new();
                self.string_into(&mut text)?;
                let ms = iso_millis(&text).ok_or_else(|| {
                    Bad::unfit(format!(
                        "\"{}\" at column {at} is not an ISO-8601 date (e.g. \"2026-03-01T10:00:00Z\")",
                        String::from_utf8_lossy(&text)
                    ))
                })?;
                push_date(col, ms);
                Ok(())
            }
            (Some(b'{' | b'['), Col::Str { json: true, .. }) => {
                self.skip(depth)?;
                let text = json_text(&self.s[start..self.i], start)?;
                col.push_str(text.as_bytes())
            }
            (Some(b'{' | b'[' | b'"' | b't' | b'f'), _) => Err(self.unfit(col, start, depth)),
            _ => Err(self.expected("a value")),
        }
    }

    /// The members of an object whose `{` was read, into `s`.
    fn object(&mut self, s: &mut StructCol, depth: usize) -> Step {
        self.ws();
        if self.peek() == Some(b'}') {
            // An empty sub-document has no fields to be an object of (its inferred shape is
            // mixed); an empty document is just that.
            if self.strict && depth > 1 {
                return Err(Bad::unfit(format!(
                    "expected an object with fields, found {{}} at column {}",
                    self.i
                )));
            }
            self.i += 1;
            s.close();
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.expected("a field name in double quotes"));
            }
            self.i += 1;
            let key_at = self.i;
            let escaped = self.key()?.is_some();
            let key_end = self.i - 1;
            let found = match escaped {
                false => s.find(&self.s[key_at..key_end]),
                true => s.find(self.scratch),
            };
            self.colon()?;
            match found {
                Some(k) => {
                    let child = &mut s.children[k];
                    // A field named twice: the last value stands.
                    if child.len() > s.len {
                        child.truncate(s.len);
                    }
                    if let Err(bad) = self.value(child, depth) {
                        return Err(bad.inside(s.fields[k].name()));
                    }
                }
                None if self.strict => {
                    let name = match escaped {
                        false => String::from_utf8_lossy(&self.s[key_at..key_end]),
                        true => String::from_utf8_lossy(self.scratch),
                    }
                    .into_owned();
                    return Err(Bad::unfit(format!("field \"{name}\" is not in the schema")));
                }
                None => self.skip(depth)?,
            }
            if self.more_or_close(b'}')? {
                s.close();
                return Ok(());
            }
        }
    }

    /// The elements of an array whose `[` was read, into `l`.
    fn array(&mut self, l: &mut ListCol, depth: usize) -> Step {
        self.ws();
        if self.peek() != Some(b']') {
            loop {
                let n = l.child.len();
                if let Err(bad) = self.value(&mut l.child, depth) {
                    return Err(bad.inside(&format!(
                        "[{}]",
                        n - l.offsets.last().copied().unwrap_or(0) as usize
                    )));
                }
                if self.more_or_close(b']')? {
                    break;
                }
            }
        } else {
            self.i += 1;
        }
        let end = i32::try_from(l.child.len())
            .map_err(|_| Bad::Malformed("more than 2^31 array elements in one batch".into()))?;
        l.offsets.push(end);
        l.valid.append_non_null();
        Ok(())
    }

    /// A field name whose opening quote was read, up to and past its closing quote. Returns
    /// `Some` when it had escapes: its text is then in `scratch`.
    fn key(&mut self) -> Step<Option<()>> {
        let begin = self.i;
        if !self.scan_string()? {
            return Ok(None);
        }
        self.scratch.clear();
        unescape(&self.s[begin..self.i - 1], self.scratch);
        if self.scratch.contains(&0) {
            return Err(Bad::Malformed(format!(
                "the field name at column {begin} holds a NUL character (\\u0000), which no document may have"
            )));
        }
        Ok(Some(()))
    }

    /// A string whose opening quote was read, its text appended to `out`.
    fn string_into(&mut self, out: &mut Vec<u8>) -> Step {
        let begin = self.i;
        let escaped = self.scan_string()?;
        let raw = &self.s[begin..self.i - 1];
        match escaped {
            false => out.extend_from_slice(raw),
            true => unescape(raw, out),
        }
        Ok(())
    }

    /// Moves past a string whose opening quote was read, checking its escapes and that it
    /// holds no raw control characters; returns whether it had escapes.
    fn scan_string(&mut self) -> Step<bool> {
        let mut escaped = false;
        loop {
            // Eight bytes at a time up to the first quote, backslash or control byte.
            while let Some(chunk) = self.s.get(self.i..self.i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                let at = first_special(w);
                self.i += at;
                if at < 8 {
                    break;
                }
            }
            match self.peek() {
                None => {
                    return Err(Bad::Malformed(
                        "unterminated string at the end of the line".into(),
                    ));
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(c) if c < 0x20 => {
                    return Err(Bad::Malformed(format!(
                        "control character in a string at column {}",
                        self.i + 1
                    )));
                }
                Some(_) => self.i += 1,
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
                    return Err(Bad::Malformed(format!(
                        "lone low surrogate in an escape at column {at}"
                    )));
                }
                if (0xD800..0xDC00).contains(&unit) {
                    if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                        return Err(Bad::Malformed(format!(
                            "lone high surrogate in an escape at column {at}"
                        )));
                    }
                    self.i += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(Bad::Malformed(format!(
                            "lone high surrogate in an escape at column {at}"
                        )));
                    }
                }
                Ok(())
            }
            _ => Err(Bad::Malformed(format!("invalid escape at column {at}"))),
        }
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(hex_value)
            .ok_or_else(|| {
                Bad::Malformed(format!("expected four hex digits at column {}", self.i + 1))
            })?;
        self.i += 4;
        Ok(digits)
    }

    /// Moves past a number (JSON's grammar: no leading zeros, no `+`, digits on both sides of
    /// `.`); returns whether it is an integer (no fraction, no exponent).
    fn scan_number(&mut self) -> Step<bool> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.expected("a digit")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit in the exponent"));
            }
            self.digits();
        }
        Ok(integer)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// A number into `col`.
    fn number_into(&mut self, col: &mut Col, depth: usize) -> Step {
        let start = self.i;
        let integer = self.scan_number()?;
        let text = &self.s[start..self.i];
        match col {
            Col::Int { values, valid } if integer => match parse_i64(text) {
                Some(n) => {
                    values.push(n);
                    valid.append_non_null();
                    Ok(())
                }
                None => Err(self.unfit(col, start, depth)),
            },
            Col::Float { values, valid } => {
                let x = parse_f64(text).ok_or_else(|| {
                    Bad::Malformed(format!("number out of range at column {}", start + 1))
                })?;
                values.push(x);
                valid.append_non_null();
                Ok(())
            }
            Col::Date { values, valid, .. } if integer && !self.strict => match parse_i64(text) {
                Some(n) => {
                    values.push(n);
                    valid.append_non_null();
                    Ok(())
                }
                None => Err(self.unfit(col, start, depth)),
            },
            Col::Str { .. } => col.push_str(text),
            _ => Err(self.unfit(col, start, depth)),
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

    /// Moves past any value, checking it is JSON.
    fn skip(&mut self, depth: usize) -> Step {
        match self.peek() {
            Some(b'{') => {
                self.too_deep(depth)?;
                self.i += 1;
                self.skip_object(depth + 1)
            }
            Some(b'[') => {
                self.too_deep(depth)?;
                self.i += 1;
                self.skip_array(depth + 1)
            }
            Some(b'"') => {
                self.i += 1;
                self.scan_string().map(|_| ())
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                if !self.scan_number()? && parse_f64(&self.s[start..self.i]).is_none() {
                    return Err(Bad::Malformed(format!(
                        "number out of range at column {}",
                        start + 1
                    )));
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.expected("a value")),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Step {
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
            self.key()?;
            self.colon()?;
            self.skip(depth)?;
            if self.more_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    fn skip_array(&mut self, depth: usize) -> Step {
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.skip(depth)?;
            if self.more_or_close(b']')? {
                return Ok(());
            }
        }
    }

    /// An extended JSON date whose `{` (at `start`) was read: its milliseconds.
    fn date(&mut self, start: usize) -> Step<i64> {
        let not_a_date = |p: &mut Self| -> Bad {
            p.i = start;
            if let Err(bad) = p.skip(1) {
                return bad;
            }
            Bad::unfit(format!(
                "expected a date ({{\"$date\": …}}) at column {}, found another object",
                start + 1
            ))
        };
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(not_a_date(self));
        }
        self.i += 1;
        let key_at = self.i;
        if self.key()?.is_some() || &self.s[key_at..self.i - 1] != b"$date" {
            return Err(not_a_date(self));
        }
        self.colon()?;
        let at = self.i + 1;
        let ms = match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let mut text = Vec::new();
                self.string_into(&mut text)?;
                iso_millis(&text).ok_or_else(|| {
                    Bad::Malformed(format!(
                        "\"{}\" at column {at} is not an ISO-8601 date (e.g. \"2026-03-01T10:00:00Z\")",
                        String::from_utf8_lossy(&text)
                    ))
                })?
            }
            Some(b'-' | b'0'..=b'9') => {
                let begin = self.i;
                self.scan_number()?;
                let n = &self.s[begin..self.i];
                parse_i64(n).ok_or_else(|| {
                    Bad::Malformed(format!(
                        "{} at column {at} is not a whole number of milliseconds",
                        String::from_utf8_lossy(n)
                    ))
                })?
            }
            Some(b'{') => {
                self.i += 1;
                self.number_long(at)?
            }
            _ => {
                self.skip(1)?;
                return Err(Bad::Malformed(format!(
                    "the date at column {at}: expected an ISO-8601 string or milliseconds since the epoch"
                )));
            }
        };
        self.ws();
        if self.peek() != Some(b'}') {
            return Err(self.expected("'}' closing the date"));
        }
        self.i += 1;
        Ok(ms)
    }

    /// `"$numberLong": "<ms>"}` after the `{` of a date's operand.
    fn number_long(&mut self, at: usize) -> Step<i64> {
        let bad = || {
            Bad::Malformed(format!(
                "the date at column {at}: expected {{\"$numberLong\": \"<milliseconds>\"}}"
            ))
        };
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(bad());
        }
        self.i += 1;
        let key_at = self.i;
        if self.key()?.is_some() || &self.s[key_at..self.i - 1] != b"$numberLong" {
            return Err(bad());
        }
        self.colon()?;
        if self.peek() != Some(b'"') {
            return Err(bad());
        }
        self.i += 1;
        let mut text = Vec::new();
        self.string_into(&mut text)?;
        let ms = std::str::from_utf8(&text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                Bad::Malformed(format!(
                    "the date at column {at}: $numberLong is not an integer"
                ))
            })?;
        self.ws();
        if self.peek() != Some(b'}') {
            return Err(bad());
        }
        self.i += 1;
        Ok(ms)
    }
}

fn push_date(col: &mut Col, ms: i64) {
    if let Col::Date { values, valid, .. } = col {
        values.push(ms);
        valid.append_non_null();
    }
}
