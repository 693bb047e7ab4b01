//! The Arrow columns lines are read into: one builder per schema field, nested like it, that
//! can drop what a line appended when the line turns out not to read.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, Float64Array, Int64Array, ListArray,
    NullArray, NullBufferBuilder, StringArray, StructArray, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef, Fields, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{Bad, Step};
use crate::document::infer::Shape;
use crate::{Error, Result};

/// A column being built: one per field of the schema, nested like it.
pub(super) enum Col {
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
pub(super) struct StructCol {
    /// The fields as the schema has them (types to cast to when a column is built as another).
    pub(super) fields: Fields,
    pub(super) names: Vec<Box<[u8]>>,
    pub(super) children: Vec<Col>,
    /// Field index by name, for objects with many fields.
    pub(super) index: Option<std::collections::HashMap<Box<[u8]>, usize>>,
    pub(super) valid: NullBufferBuilder,
    pub(super) len: usize,
    /// The field found last: documents tend to list fields in the same order.
    pub(super) last: usize,
}

pub(super) struct ListCol {
    pub(super) field: FieldRef,
    pub(super) offsets: Vec<i32>,
    pub(super) child: Col,
    pub(super) valid: NullBufferBuilder,
}

/// Above this many fields an object's names are looked up in a hash map.
const LINEAR_FIELDS: usize = 12;

impl Col {
    pub(super) fn new(ty: &DataType, shape: &Shape) -> Result<Col> {
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

    #[inline]
    pub(super) fn len(&self) -> usize {
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

    pub(super) fn push_null(&mut self) {
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
    pub(super) fn truncate(&mut self, n: usize) {
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
    pub(super) fn finish(&mut self, ty: &DataType) -> Result<ArrayRef> {
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
    pub(super) fn wants(&self) -> &'static str {
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

    pub(super) fn push_str(&mut self, text: &[u8]) -> Step {
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

/// Whether two short field names are equal, without a call to `memcmp`.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The end offset of a string column's bytes, which Arrow's `Utf8` holds in 32 bits.
pub(super) fn text_end(bytes: &[u8]) -> Step<i32> {
    i32::try_from(bytes.len())
        .map_err(|_| Bad::Malformed("more than 2 GiB of text in one batch of documents".into()))
}

impl StructCol {
    pub(super) fn new(fields: &Fields, shape: &Shape) -> Result<StructCol> {
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
            last: usize::MAX,
        })
    }

    #[inline]
    pub(super) fn find(&mut self, key: &[u8]) -> Option<usize> {
        let next = self.last.wrapping_add(1);
        if self.names.get(next).is_some_and(|n| same(n, key)) {
            self.last = next;
            return Some(next);
        }
        let found = match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.names.iter().position(|n| same(n, key)),
        };
        if let Some(i) = found {
            self.last = i;
        }
        found
    }

    /// Ends an object: the fields it lacked are null.
    pub(super) fn close(&mut self) {
        // The next object's first field is predicted to be the first one.
        self.last = usize::MAX;
        for c in &mut self.children {
            if c.len() == self.len {
                c.push_null();
            }
        }
        self.valid.append_non_null();
        self.len += 1;
    }

    pub(super) fn push_null(&mut self) {
        for c in &mut self.children {
            c.push_null();
        }
        self.valid.append_null();
        self.len += 1;
    }

    pub(super) fn truncate(&mut self, n: usize) {
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

    pub(super) fn finish(&mut self) -> Result<StructArray> {
        let len = self.len;
        let columns = self.columns()?;
        let valid = self.valid.finish();
        if self.fields.is_empty() {
            return Ok(StructArray::new_empty_fields(len, valid));
        }
        Ok(StructArray::try_new(self.fields.clone(), columns, valid)?)
    }

    /// The documents so far as a record batch of `schema` (whose fields these are).
    pub(super) fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
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
