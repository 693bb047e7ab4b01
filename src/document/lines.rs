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

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, NullArray, StringArray,
    StructArray, TimestampMillisecondArray,
};
use datafusion::arrow::array::{BooleanBufferBuilder, NullBufferBuilder};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef, Fields, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::date::parse_iso;
use super::infer::Shape;
use crate::{Error, Result};

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
                    out.batches.push(root.batch(schema)?);
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
    if root.len > 0 {
        out.batches.push(root.batch(schema)?);
    }
    Ok(out)
}

/// Checks that every line of `data` is one JSON object (or blank), without reading values.
pub fn check(data: &[u8]) -> Vec<Invalid> {
    let empty: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::empty());
    let opts = ReadOptions {
        strict: false,
        batch_size: usize::MAX,
        first_only: false,
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
enum Bad {
    Malformed(String),
    Unfit { path: String, msg: String },
}

impl Bad {
    fn unfit(msg: String) -> Bad {
        Bad::Unfit {
            path: String::new(),
            msg,
        }
    }

    /// The same problem, inside field `key` (or element `[i]`).
    fn inside(self, key: &str) -> Bad {
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
    fn reason(self) -> String {
        match self {
            Bad::Malformed(m) => m,
            Bad::Unfit { path, msg } if path.is_empty() => msg,
            Bad::Unfit { path, msg } => format!("{path}: {msg}"),
        }
    }
}

type Step<T = ()> = std::result::Result<T, Bad>;

/// How deep documents may nest (MongoDB allows 100 levels; deeper input would only exhaust
/// the stack).
const MAX_DEPTH: usize = 128;

/// A column being built: one per field of the schema, nested like it.
enum Col {
    Null(usize),
    Bool {
        values: BooleanBufferBuilder,
        valid: NullBufferBuilder,
    },
    Int {
        values: Vec<i64>,
        valid: NullBufferBuilder,
    },
    Float {
        values: Vec<f64>,
        valid: NullBufferBuilder,
    },
    Date {
        values: Vec<i64>,
        valid: NullBufferBuilder,
        tz: Option<Arc<str>>,
    },
    Str {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
        valid: NullBufferBuilder,
        /// Objects and arrays are taken as their JSON text (a mixed field).
        json: bool,
    },
    Struct(Box<StructCol>),
    List(Box<ListCol>),
}

/// An object column: its fields' columns, each as long as it once an object ends.
struct StructCol {
    /// The fields as the schema has them (types to cast to when a column is built as another).
    fields: Fields,
    names: Vec<Box<[u8]>>,
    children: Vec<Col>,
    /// Field index by name, for objects with many fields.
    index: Option<std::collections::HashMap<Box<[u8]>, usize>>,
    valid: NullBufferBuilder,
    len: usize,
    /// The field found last: documents tend to list fields in the same order.
    last: usize,
}

struct ListCol {
    field: FieldRef,
    offsets: Vec<i32>,
    child: Col,
    valid: NullBufferBuilder,
}

/// Above this many fields an object's names are looked up in a hash map.
const LINEAR_FIELDS: usize = 12;

impl Col {
    fn new(ty: &DataType, shape: &Shape) -> Result<Col> {
        let valid = NullBufferBuilder::new(0);
        Ok(match ty {
            DataType::Null => Col::Null(0),
            DataType::Boolean => Col::Bool {
                values: BooleanBufferBuilder::new(0),
                valid,
            },
            DataType::Int64 => Col::Int {
                values: Vec::new(),
                valid,
            },
            DataType::Float64 => Col::Float {
                values: Vec::new(),
                valid,
            },
            DataType::Timestamp(TimeUnit::Millisecond, tz) => Col::Date {
                values: Vec::new(),
                valid,
                tz: tz.clone(),
            },
            DataType::Utf8 => Col::Str {
                offsets: vec![0],
                bytes: Vec::new(),
                valid,
                json: matches!(shape, Shape::Text),
            },
            DataType::Struct(fields) => Col::Struct(Box::new(StructCol::new(fields, shape)?)),
            DataType::List(field) => {
                let elem = match shape {
                    Shape::Array(e) => e.as_ref().clone(),
                    _ => Shape::of_type(field.data_type()),
                };
                Col::List(Box::new(ListCol {
                    field: field.clone(),
                    offsets: vec![0],
                    child: Col::new(field.data_type(), &elem)?,
                    valid,
                }))
            }
            // Another type (from a schema Fluxion did not infer or declare): built as the
            // nearest of these, then cast.
            other => {
                let near = Shape::of_type(other);
                let near_ty = near.data_type();
                if &near_ty == other {
                    return Err(Error::internal(format!(
                        "JSON lines cannot be read into {other} columns"
                    )));
                }
                Col::new(&near_ty, &near)?
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Col::Null(n) => *n,
            Col::Bool { valid, .. }
            | Col::Int { valid, .. }
            | Col::Float { valid, .. }
            | Col::Date { valid, .. }
            | Col::Str { valid, .. } => valid.len(),
            Col::Struct(s) => s.len,
            Col::List(l) => l.offsets.len() - 1,
        }
    }

    fn push_null(&mut self) {
        match self {
            Col::Null(n) => *n += 1,
            Col::Bool { values, valid } => {
                values.append(false);
                valid.append_null();
            }
            Col::Int { values, valid } | Col::Date { values, valid, .. } => {
                values.push(0);
                valid.append_null();
            }
            Col::Float { values, valid } => {
                values.push(0.0);
                valid.append_null();
            }
            Col::Str {
                offsets,
                bytes,
                valid,
                ..
            } => {
                offsets.push(bytes.len() as i32);
                valid.append_null();
            }
            Col::Struct(s) => s.push_null(),
            Col::List(l) => {
                let end = *l.offsets.last().unwrap_or(&0);
                l.offsets.push(end);
                l.valid.append_null();
            }
        }
    }

    /// Drops the values after the first `n` (a line that turned out not to read).
    fn truncate(&mut self, n: usize) {
        if self.len() <= n {
            return;
        }
        match self {
            Col::Null(len) => *len = n,
            Col::Bool { values, valid } => {
                values.truncate(n);
                valid.truncate(n);
            }
            Col::Int { values, valid } | Col::Date { values, valid, .. } => {
                values.truncate(n);
                valid.truncate(n);
            }
            Col::Float { values, valid } => {
                values.truncate(n);
                valid.truncate(n);
            }
            Col::Str {
                offsets,
                bytes,
                valid,
                ..
            } => {
                bytes.truncate(offsets[n] as usize);
                offsets.truncate(n + 1);
                valid.truncate(n);
            }
            Col::Struct(s) => s.truncate(n),
            Col::List(l) => {
                l.child.truncate(l.offsets[n] as usize);
                l.offsets.truncate(n + 1);
                l.valid.truncate(n);
            }
        }
    }

    /// The values so far as an array of type `ty`; the column starts over empty.
    fn finish(&mut self, ty: &DataType) -> Result<ArrayRef> {
        let array: ArrayRef = match self {
            Col::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
            Col::Bool { values, valid } => {
                Arc::new(BooleanArray::new(values.finish(), valid.finish()))
            }
            Col::Int { values, valid } => Arc::new(Int64Array::new(
                std::mem::take(values).into(),
                valid.finish(),
            )),
            Col::Float { values, valid } => Arc::new(Float64Array::new(
                std::mem::take(values).into(),
                valid.finish(),
            )),
            Col::Date { values, valid, tz } => Arc::new(
                TimestampMillisecondArray::new(std::mem::take(values).into(), valid.finish())
                    .with_timezone_opt(tz.clone()),
            ),
            Col::Str {
                offsets,
                bytes,
                valid,
                ..
            } => {
                let offsets = std::mem::replace(offsets, vec![0]);
                let bytes = std::mem::take(bytes);
                // Offsets only grow and end at the end of the bytes; every piece came from
                // checked UTF-8 or was written as UTF-8.
                Arc::new(StringArray::try_new(
                    OffsetBuffer::new(offsets.into()),
                    bytes.into(),
                    valid.finish(),
                )?)
            }
            Col::Struct(s) => Arc::new(s.finish()?),
            Col::List(l) => {
                let offsets = std::mem::replace(&mut l.offsets, vec![0]);
                let values = l.child.finish(l.field.data_type())?;
                Arc::new(ListArray::try_new(
                    l.field.clone(),
                    OffsetBuffer::new(offsets.into()),
                    values,
                    l.valid.finish(),
                )?)
            }
        };
        if array.data_type() == ty {
            return Ok(array);
        }
        let opts = CastOptions {
            safe: false,
            ..Default::default()
        };
        Ok(cast_with_options(&array, ty, &opts)?)
    }

    /// What this column takes, for errors.
    fn wants(&self) -> &'static str {
        match self {
            Col::Null(_) => "null",
            Col::Bool { .. } => "a boolean",
            Col::Int { .. } => "an integer",
            Col::Float { .. } => "a number",
            Col::Date { .. } => "a date",
            Col::Str { json: false, .. } => "a string",
            Col::Str { json: true, .. } => "a value",
            Col::Struct(_) => "an object",
            Col::List(_) => "an array",
        }
    }

    fn push_str(&mut self, text: &[u8]) -> Step {
        let Col::Str {
            offsets,
            bytes,
            valid,
            ..
        } = self
        else {
            return Ok(());
        };
        bytes.extend_from_slice(text);
        offsets.push(text_end(bytes)?);
        valid.append_non_null();
        Ok(())
    }
}

/// The end offset of a string column's bytes, which Arrow's `Utf8` holds in 32 bits.
fn text_end(bytes: &[u8]) -> Step<i32> {
    i32::try_from(bytes.len())
        .map_err(|_| Bad::Malformed("more than 2 GiB of text in one batch of documents".into()))
}

impl StructCol {
    fn new(fields: &Fields, shape: &Shape) -> Result<StructCol> {
        let shapes = match shape {
            Shape::Object(map) => Some(map),
            _ => None,
        };
        let children = fields
            .iter()
            .map(|f| {
                let shape = shapes
                    .and_then(|m| m.get(f.name()))
                    .cloned()
                    .unwrap_or_else(|| Shape::of_type(f.data_type()));
                Col::new(f.data_type(), &shape)
            })
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<Box<[u8]>> = fields.iter().map(|f| f.name().as_bytes().into()).collect();
        let index = (names.len() > LINEAR_FIELDS).then(|| {
            names
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, n)| (n, i))
                .collect()
        });
        Ok(StructCol {
            fields: fields.clone(),
            names,
            children,
            index,
            valid: NullBufferBuilder::new(0),
            len: 0,
            last: 0,
        })
    }

    fn find(&mut self, key: &[u8]) -> Option<usize> {
        let next = self.last + 1;
        if self.names.get(next).is_some_and(|n| n.as_ref() == key) {
            self.last = next;
            return Some(next);
        }
        let found = match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.names.iter().position(|n| n.as_ref() == key),
        };
        if let Some(i) = found {
            self.last = i;
        }
        found
    }

    /// Ends an object: the fields it lacked are null.
    fn close(&mut self) {
        for c in &mut self.children {
            if c.len() == self.len {
                c.push_null();
            }
        }
        self.valid.append_non_null();
        self.len += 1;
    }

    fn push_null(&mut self) {
        for c in &mut self.children {
            c.push_null();
        }
        self.valid.append_null();
        self.len += 1;
    }

    fn truncate(&mut self, n: usize) {
        for c in &mut self.children {
            c.truncate(n);
        }
        if self.valid.len() > n {
            self.valid.truncate(n);
        }
        self.len = self.len.min(n);
    }

    fn columns(&mut self) -> Result<Vec<ArrayRef>> {
        self.len = 0;
        self.children
            .iter_mut()
            .zip(self.fields.iter())
            .map(|(c, f)| c.finish(f.data_type()))
            .collect()
    }

    fn finish(&mut self) -> Result<StructArray> {
        let len = self.len;
        let columns = self.columns()?;
        let valid = self.valid.finish();
        if self.fields.is_empty() {
            return Ok(StructArray::new_empty_fields(len, valid));
        }
        Ok(StructArray::try_new(self.fields.clone(), columns, valid)?)
    }

    /// The documents so far as a record batch of `schema` (whose fields these are).
    fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let rows = self.len;
        let columns = self.columns()?;
        self.valid = NullBufferBuilder::new(0);
        let opts = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &opts,
        )?)
    }
}

/// One line being read.
struct Parser<'s, 'b> {
    s: &'s [u8],
    i: usize,
    strict: bool,
    /// Unescaped field names.
    scratch: &'b mut Vec<u8>,
}

impl<'s> Parser<'s, '_> {
    /// The whole line into `root`: blank (`false`) or one object and nothing after it.
    fn document(&mut self, root: &mut StructCol) -> Step<bool> {
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
    fn validate(&mut self) -> std::result::Result<(), String> {
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
            (Some(b'"'), Col::Date { .. }) => {
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
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.expected("':'"));
            }
            self.i += 1;
            self.ws();
            match found {
                Some(k) => {
                    let child = &mut s.children[k];
                    // A field named twice: the last value stands.
                    child.truncate(s.len);
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
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    s.close();
                    return Ok(());
                }
                _ => return Err(self.expected("',' or '}'")),
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
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.ws();
                    }
                    Some(b']') => break,
                    _ => return Err(self.expected("',' or ']'")),
                }
            }
        }
        self.i += 1;
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
            // Eight bytes at a time while none is a quote, a backslash or a control byte.
            while let Some(chunk) = self.s.get(self.i..self.i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                if special(w) {
                    break;
                }
                self.i += 8;
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
            Col::Date { values, valid, .. } if integer => match parse_i64(text) {
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
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.expected("':'"));
            }
            self.i += 1;
            self.ws();
            self.skip(depth)?;
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

    fn skip_array(&mut self, depth: usize) -> Step {
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.skip(depth)?;
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

/// Whether any of the eight bytes of `w` is `"`, `\` or below 0x20.
#[inline]
fn special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below_space) != 0
}

fn hex_value(d: &[u8]) -> Option<u32> {
    d.iter().try_fold(0u32, |acc, &c| {
        let v = (c as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// The text of a string's raw content (between its quotes, escapes checked), appended.
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
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
fn parse_i64(text: &[u8]) -> Option<i64> {
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
fn parse_f64(text: &[u8]) -> Option<f64> {
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
fn iso_millis(text: &[u8]) -> Option<i64> {
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
fn json_text(span: &[u8], start: usize) -> Step<String> {
    serde_json::from_slice::<serde_json::Value>(span)
        .map(|v| v.to_string())
        .map_err(|e| Bad::Malformed(format!("at column {}: {e}", start + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
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
            r#"{"m": true, "o": {}, "t": []}"#,
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
        let r = read_all(data, &shape, true);
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
            },
        )
        .unwrap();
        let sizes: Vec<_> = r.batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [4, 4, 2]);
    }
}
