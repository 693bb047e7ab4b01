//! Strict JSON lines → Arrow columns, in one pass.
//!
//! Every line is parsed against the JSON grammar (RFC 8259) and its values go straight into
//! column builders shaped by the schema: no document is built, no text is rewritten, no second
//! decoder runs over it. A line is one JSON object, or blank; anything else is left out and
//! reported ([`Invalid`]) with its line index, byte offset and why. So are lines that are JSON
//! but do not fit the schema — marked as such, so that a caller holding a sampled schema can
//! infer it again from every document.
//!
//! What each column type takes (`null` fits every column; a field a document lacks is null):
//!
//! | column              | takes                                                           |
//! |---------------------|-----------------------------------------------------------------|
//! | `Int64`             | integers within 64 bits                                         |
//! | `Float64`           | numbers                                                         |
//! | `Boolean`           | `true`, `false`                                                 |
//! | `Utf8`              | strings; numbers (as written) and booleans as their text; where the inferred shape is mixed, objects and arrays as their JSON text |
//! | `Timestamp(ms)`     | extended JSON dates (`{"$date": …}`), integers (milliseconds), ISO-8601 text |
//! | `Struct`            | objects; a field named twice keeps its last value               |
//! | `List`              | arrays                                                          |
//! | `Null`              | only `null`                                                     |
//!
//! Under an inferred schema a field it does not name makes the line unfit; a declared schema
//! ignores such fields (their values are still checked to be JSON). A field name holding a NUL
//! character (`"\u0000"`) is refused, as MongoDB refuses it: no document can have one, which
//! leaves such names free for Fluxion's own hidden columns.

mod columns;
mod parse;
mod scalars;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use self::columns::StructCol;
use self::parse::Parser;
use super::infer::Shape;
use crate::Result;

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

/// What reading JSON lines gave: the batches of the lines that read, and the others.
#[derive(Debug, Default)]
pub struct Read {
    pub batches: Vec<RecordBatch>,
    /// The lines left out, in input order.
    pub invalid: Vec<Invalid>,
    /// Documents in `batches`.
    pub documents: usize,
}

/// How lines are read into columns.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Refuse fields the schema does not name (an inferred schema); else ignore them.
    pub strict: bool,
    /// Rows per record batch.
    pub batch_size: usize,
    /// Stop at the first line left out.
    pub first_only: bool,
    /// Keep the batches; without, reading only finds the lines left out (and counts the rest).
    pub keep: bool,
}

/// Reads the JSON lines of `data` into batches of `schema`, whose documents have `shape` (the
/// shape tells a mixed text field, which takes objects as JSON text, from a string field).
pub fn read(data: &[u8], schema: &SchemaRef, shape: &Shape, opts: ReadOptions) -> Result<Read> {
    let mut root = StructCol::new(schema.fields(), shape)?;
    let mut out = Read::default();
    let batch_size = opts.batch_size.max(1);
    // UTF-8 is checked once for the whole input; only a failure looks line by line.
    let mut utf8_error_at = std::str::from_utf8(data).err().map(|e| e.valid_up_to());
    let mut scratch = Vec::new();
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let line = &data[start..end];
        let mut verdict = Ok(false);
        if utf8_error_at.is_some_and(|at| at < end) {
            if let Err(e) = std::str::from_utf8(line) {
                verdict = Err(format!("not valid UTF-8 at column {}", e.valid_up_to() + 1));
            }
            let rest = &data[(end + 1).min(data.len())..];
            utf8_error_at = std::str::from_utf8(rest)
                .err()
                .map(|e| end + 1 + e.valid_up_to());
        }
        let mut malformed = true;
        if verdict.is_ok() {
            let rows = root.len;
            let mut p = Parser {
                s: line,
                i: 0,
                strict: opts.strict,
                scratch: &mut scratch,
            };
            verdict = match p.document(&mut root) {
                Ok(read) => Ok(read),
                Err(bad) => {
                    root.truncate(rows);
                    match bad {
                        Bad::Malformed(reason) => Err(reason),
                        unfit @ Bad::Unfit { .. } => {
                            // Say what is wrong with the line as JSON first, if anything is.
                            let mut check = Parser {
                                s: line,
                                i: 0,
                                strict: false,
                                scratch: p.scratch,
                            };
                            match check.validate() {
                                Err(reason) => Err(reason),
                                Ok(()) => {
                                    malformed = false;
                                    Err(unfit.reason())
                                }
                            }
                        }
                    }
                }
            };
        }
        match verdict {
            Ok(false) => {}
            Ok(true) => {
                out.documents += 1;
                if root.len == batch_size {
                    match opts.keep {
                        true => out.batches.push(root.batch(schema)?),
                        false => root.truncate(0),
                    }
                }
            }
            Err(reason) => {
                out.invalid.push(Invalid {
                    line: line_no,
                    offset: start,
                    len: line.len(),
                    reason,
                    malformed,
                });
                if opts.first_only {
                    out.batches.clear();
                    out.documents = 0;
                    return Ok(out);
                }
            }
        }
        start = end + 1;
        line_no += 1;
    }
    if root.len > 0 && opts.keep {
        out.batches.push(root.batch(schema)?);
    }
    Ok(out)
}

/// Checks that every line of `data` is one JSON object (or blank), without reading values.
pub fn check(data: &[u8]) -> Vec<Invalid> {
    let empty: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::empty());
    let opts = ReadOptions {
        strict: false,
        batch_size: 8192,
        first_only: false,
        keep: false,
    };
    match read(data, &empty, &Shape::Object(Default::default()), opts) {
        Ok(read) => read.invalid,
        Err(e) => vec![Invalid {
            line: 0,
            offset: 0,
            len: data.len(),
            reason: e.to_string(),
            malformed: true,
        }],
    }
}

/// Why a line was left out: not JSON (or not an object), or not fitting the schema at a
/// field path (`items[2].qty`).
pub(super) enum Bad {
    Malformed(String),
    Unfit { path: String, msg: String },
}

impl Bad {
    pub(super) fn unfit(msg: String) -> Bad {
        Bad::Unfit {
            path: String::new(),
            msg,
        }
    }

    /// The same problem, inside field `key` (or element `[i]`).
    pub(super) fn inside(self, key: &str) -> Bad {
        match self {
            Bad::Unfit { path, msg } => {
                let path = match path.as_str() {
                    "" => key.to_string(),
                    p if p.starts_with('[') => format!("{key}{p}"),
                    p => format!("{key}.{p}"),
                };
                Bad::Unfit { path, msg }
            }
            m => m,
        }
    }

    /// The reason to report.
    pub(super) fn reason(self) -> String {
        match self {
            Bad::Malformed(m) => m,
            Bad::Unfit { path, msg } if path.is_empty() => msg,
            Bad::Unfit { path, msg } => format!("{path}: {msg}"),
        }
    }
}

pub(super) type Step<T = ()> = std::result::Result<T, Bad>;

/// How deep documents may nest (MongoDB allows 100 levels; deeper input would only exhaust
/// the stack).
pub(super) const MAX_DEPTH: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::Schema;
    use serde_json::json;

    fn reasons(data: &str) -> Vec<(usize, String)> {
        check(data.as_bytes())
            .into_iter()
            .map(|i| (i.line, i.reason))
            .collect()
    }

    fn shape_of(docs: &[serde_json::Value]) -> Shape {
        docs.iter().map(Shape::of).fold(Shape::Null, Shape::merge)
    }

    fn read_all(data: &str, shape: &Shape, strict: bool) -> Read {
        let schema = Arc::new(super::super::infer::schema_of(shape));
        read(
            data.as_bytes(),
            &schema,
            shape,
            ReadOptions {
                strict,
                batch_size: 1024,
                first_only: false,
                keep: true,
            },
        )
        .unwrap()
    }

    /// The batches' rows as JSON, as Fluxion writes them.
    fn rows(r: &Read) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for b in &r.batches {
            crate::document::encode::write_batch(&mut out, b).unwrap();
        }
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
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
            assert!(check(line.as_bytes()).is_empty(), "{line}");
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
            r#"{"a": 1e400}"#,
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

    /// The same lines are refused whichever columns they are read into.
    #[test]
    fn malformed_lines_are_refused_into_any_schema() {
        let shape = shape_of(&[json!({"customerId": -1, "status": "PAID", "orderValue": 12.5})]);
        let data = concat!(
            r#"{"customerId": -1, "status": "PAID", "orderValue": 12.5,,}"#,
            "\n",
            r#"{"customerId": 2, "status": "PAID",, "orderValue": 1}"#,
            "\n",
            r#"{"customerId": 3, "status": "PAID", "orderValue": 1.5}"#,
            "\n",
        );
        for strict in [true, false] {
            let r = read_all(data, &shape, strict);
            assert_eq!(r.documents, 1);
            assert_eq!(
                r.invalid
                    .iter()
                    .map(|i| (i.line, i.malformed))
                    .collect::<Vec<_>>(),
                [(0, true), (1, true)]
            );
            assert_eq!(
                rows(&r),
                [json!({"customerId": 3, "status": "PAID", "orderValue": 1.5})]
            );
        }
    }

    #[test]
    fn reports_each_bad_line_and_keeps_the_good_ones() {
        let data = "{\"a\": 1}\n\n{\"a\": 2,,}\n{\"a\": 3}\n\u{0}\n";
        let r = read_all(data, &shape_of(&[json!({"a": 1})]), true);
        assert_eq!(r.documents, 2);
        assert_eq!(rows(&r), [json!({"a": 1}), json!({"a": 3})]);
        let lines: Vec<_> = r
            .invalid
            .iter()
            .map(|i| (i.line, i.offset, i.len))
            .collect();
        assert_eq!(lines, [(2, 10, 10), (4, 30, 1)]);
    }

    #[test]
    fn invalid_utf8_is_pinned_to_its_line() {
        let mut data = b"{\"a\": \"ok\"}\n{\"a\": \"".to_vec();
        data.extend_from_slice(&[0xff, 0xfe]);
        data.extend_from_slice(b"\"}\n{\"a\": \"fine\"}\n");
        let invalid = check(&data);
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].line, 1);
        assert!(invalid[0].reason.contains("UTF-8"), "{invalid:?}");
    }

    #[test]
    fn values_follow_the_column_types() {
        let shape = shape_of(&[
            json!({"i": 1, "f": 1.5, "b": true, "s": "x", "o": {"k": 1}, "t": [1], "m": 1}),
            json!({"m": "one", "f": 2}),
        ]);
        let data = concat!(
            r#"{"i": -9223372036854775808, "f": 2, "b": false, "s": "a\"\u00e9\ud83d\ude00", "o": {"k": 2, "k": 3}, "t": [1, null, 3], "m": {"x": [1, 2]}}"#,
            "\n",
            r#"{"m": true, "o": {"k": null}, "t": []}"#,
            "\n",
            r#"{"m": 1.50, "s": 7, "o": null, "t": null}"#,
            "\n",
        );
        let r = read_all(data, &shape, true);
        assert!(r.invalid.is_empty(), "{:?}", r.invalid);
        assert_eq!(
            rows(&r),
            [
                json!({"i": i64::MIN, "f": 2.0, "b": false, "s": "a\"é😀", "o": {"k": 3}, "t": [1, null, 3], "m": "{\"x\":[1,2]}"}),
                json!({"m": "true", "o": {}, "t": []}),
                json!({"m": "1.50", "s": "7"}),
            ]
        );
    }

    #[test]
    fn values_that_do_not_fit_are_unfit_not_malformed() {
        let shape = shape_of(&[json!({"i": 1, "o": {"k": 1}, "t": [1]})]);
        let data = concat!(
            r#"{"i": 1.5}"#,
            "\n",
            r#"{"i": 9223372036854775808}"#,
            "\n",
            r#"{"o": {"k": "s"}}"#,
            "\n",
            r#"{"t": [1, true]}"#,
            "\n",
            r#"{"new": 1}"#,
            "\n",
            r#"{"i": "1",}"#,
            "\n",
            r#"{"i": 2}"#,
            "\n",
        );
        let r = read_all(data, &shape, true);
        assert_eq!(rows(&r), [json!({"i": 2})]);
        let got: Vec<_> = r
            .invalid
            .iter()
            .map(|i| (i.malformed, i.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    false,
                    "i: expected an integer, found a number that is not a 64-bit integer at column 7"
                ),
                (
                    false,
                    "i: expected an integer, found a number that is not a 64-bit integer at column 7"
                ),
                (
                    false,
                    "o.k: expected an integer, found a string at column 13"
                ),
                (
                    false,
                    "t[1]: expected an integer, found a boolean at column 11"
                ),
                (false, "field \"new\" is not in the schema"),
                (
                    true,
                    "not valid JSON: expected a field name in double quotes at column 11"
                ),
            ]
        );
        // A declared schema ignores fields it does not name.
        let r = read_all("{\"i\": 1, \"new\": {\"deep\": [1]}}\n", &shape, false);
        assert_eq!(rows(&r), [json!({"i": 1})]);
    }

    #[test]
    fn dates_read_from_extended_json_milliseconds_and_iso_text() {
        let shape = shape_of(&[json!({"at": {"$date": 1}})]);
        let data = concat!(
            r#"{"at": {"$date": "1970-01-01T00:00:01.5Z"}}"#,
            "\n",
            r#"{"at": {"$date": {"$numberLong": "-7"}}}"#,
            "\n",
            r#"{"at": {"$date": 12}}"#,
            "\n",
            r#"{"at": "2026-03-01T10:00:00.250Z"}"#,
            "\n",
            r#"{"at": "2026-03-01T11:00:00+01:00"}"#,
            "\n",
            r#"{"at": {"$date": "not a date"}}"#,
            "\n",
            r#"{"at": {"$date": 1.5}}"#,
            "\n",
            r#"{"at": {"when": 1}}"#,
            "\n",
        );
        // Under an inferred schema the plain ISO text and number make the field mixed.
        let strict = read_all(data, &shape, true);
        assert_eq!(strict.documents, 3);
        assert!(
            strict.invalid[..2].iter().all(|i| !i.malformed),
            "{:?}",
            strict.invalid
        );
        // A declared date reads them as dates.
        let r = read_all(data, &shape, false);
        let col = r.batches[0].column(0);
        let ts = col
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(
            ts.values().to_vec(),
            [1500, -7, 12, 1772359200250, 1772359200000]
        );
        let reasons: Vec<_> = r
            .invalid
            .iter()
            .map(|i| (i.malformed, i.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].1.contains("is not an ISO-8601 date"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("whole number"), "{reasons:?}");
        assert!(reasons[2].1.contains("expected a date"), "{reasons:?}");
        assert!(!reasons[2].0);
    }

    #[test]
    fn field_names_with_nul_are_refused() {
        let r = reasons("{\"a\\u0000b\": 1}\n{\"ok\": {\"x\\u0000\": 1}}\n{\"fine\": 1}\n");
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].1.contains("NUL"), "{r:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let line = format!("{{\"a\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let r = reasons(&line);
        assert!(r[0].1.contains("nested more than"), "{r:?}");
    }

    /// Mutated lines (bytes flipped, dropped, repeated) never panic the reader, under inferred
    /// and declared schemas of every column type, and every line is either a document or left
    /// out: none is lost, none counted twice.
    #[test]
    fn mutated_lines_are_read_or_left_out_never_lost() {
        let seeds = [
            r#"{"i": 1, "f": 2.5, "b": true, "s": "x\u00e9", "d": {"$date": "2026-03-01T10:00:00Z"}, "o": {"k": [1, {"z": null}]}, "t": [1, 2], "m": 1}"#,
            r#"{"m": "two", "d": {"$date": {"$numberLong": "-5"}}, "o": {"k": []}, "t": [], "s": "a\"b"}"#,
        ];
        let docs: Vec<serde_json::Value> = seeds
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let shape = shape_of(&docs);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let alphabet = b"{}[]\",:0123456789.eE+-truefalsn \\u\"$date";
        let mut data = Vec::new();
        let mut lines = 0;
        for _ in 0..3_000 {
            let mut line = seeds[next(seeds.len())].as_bytes().to_vec();
            // A third of the lines as they are; the others with one to three mutations.
            for _ in 0..next(3) * (1 + next(3)) {
                let at = next(line.len());
                match next(3) {
                    0 => line[at] = alphabet[next(alphabet.len())],
                    1 => {
                        line.remove(at);
                    }
                    _ => line.insert(at, line[at]),
                }
            }
            line.retain(|b| *b != b'\n');
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            data.extend_from_slice(&line);
            data.push(b'\n');
            lines += 1;
        }
        let data = String::from_utf8_lossy(&data).into_owned();
        for strict in [true, false] {
            let r = read_all(&data, &shape, strict);
            assert_eq!(r.documents + r.invalid.len(), lines, "strict: {strict}");
            let rows: usize = r.batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, r.documents);
            // The mutations leave plenty of each.
            assert!(
                r.documents > 300 && r.invalid.len() > 300,
                "{} {}",
                r.documents,
                r.invalid.len()
            );
            // Every line read is JSON to serde as well: nothing lenient gets through.
            let left_out: std::collections::HashSet<usize> =
                r.invalid.iter().map(|i| i.line).collect();
            for (n, line) in data.lines().enumerate() {
                if !left_out.contains(&n) {
                    assert!(
                        matches!(
                            serde_json::from_str::<serde_json::Value>(line),
                            Ok(serde_json::Value::Object(_))
                        ),
                        "read although not a JSON object: {line}"
                    );
                }
            }
            // Whatever serde reads as an object is malformed for neither reader.
            for bad in r.invalid.iter().filter(|i| i.malformed) {
                let line = &data.as_bytes()[bad.offset..bad.offset + bad.len];
                let parsed = serde_json::from_slice::<serde_json::Value>(line);
                assert!(
                    !matches!(parsed, Ok(serde_json::Value::Object(_)))
                        || bad.reason.contains("date")
                        || bad.reason.contains("NUL"),
                    "{} refused: {}",
                    String::from_utf8_lossy(line),
                    bad.reason
                );
            }
        }
    }

    #[test]
    fn a_batch_is_cut_every_batch_size_rows_and_empty_schemas_count_rows() {
        let data = "{\"a\": 1}\n".repeat(10);
        let schema: SchemaRef = Arc::new(Schema::empty());
        let r = read(
            data.as_bytes(),
            &schema,
            &Shape::Object(Default::default()),
            ReadOptions {
                strict: false,
                batch_size: 4,
                first_only: false,
                keep: true,
            },
        )
        .unwrap();
        let sizes: Vec<_> = r.batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [4, 4, 2]);
    }
}
