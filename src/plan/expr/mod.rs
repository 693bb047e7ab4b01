//! Aggregation expressions compiled to DataFusion [`Expr`]s.
//!
//! [`ExprCompiler`] walks the DSL's [`Expression`] AST against the schema of the plan the
//! expression reads from. Types are known at plan time, so MongoDB's dynamic rules (which
//! operand types an operator accepts, the cross-type comparison order) are resolved here once
//! per plan instead of once per row. Each operator family is one file.

mod arithmetic;
mod array;
mod binding;
mod boolean;
mod comparison;
mod conditional;
mod date;
mod evaluate;
mod string;
mod types;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions_nested::expr_fn::make_array;
use datafusion::logical_expr::{Expr, ExprSchemable, lit};
use serde_json::Value;

use super::field;
use crate::Result;
use crate::document::date::date_millis;
use crate::document::infer::Shape;
use crate::dsl::JsonPath;
use crate::dsl::expression::{Expression, Family};

pub use boolean::truthy;
pub use evaluate::BatchExpr;

/// The coarse type classes MongoDB's rules are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Number,
    String,
    Document,
    Array,
    Bool,
    Date,
    Other,
}

impl Kind {
    /// The class of an Arrow type.
    pub fn of(ty: &DataType) -> Kind {
        use DataType::*;
        match ty {
            Null => Kind::Null,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
            | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => {
                Kind::Number
            }
            Utf8 | LargeUtf8 | Utf8View => Kind::String,
            Struct(_) | Map(..) => Kind::Document,
            List(_) | LargeList(_) | FixedSizeList(..) | ListView(_) | LargeListView(_) => {
                Kind::Array
            }
            Boolean => Kind::Bool,
            Timestamp(..) | Date32 | Date64 => Kind::Date,
            _ => Kind::Other,
        }
    }

    /// Position in MongoDB's cross-type comparison order (null < numbers < strings <
    /// documents < arrays < … < booleans < dates).
    pub fn bson_rank(self) -> i64 {
        match self {
            Kind::Null => 1,
            Kind::Number => 2,
            Kind::String => 3,
            Kind::Document => 4,
            Kind::Array => 5,
            Kind::Other => 6,
            Kind::Bool => 8,
            Kind::Date => 9,
        }
    }

    /// A name for error messages, in MongoDB's vocabulary.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Document => "object",
            Kind::Array => "array",
            Kind::Bool => "bool",
            Kind::Date => "date",
            Kind::Other => "unsupported type",
        }
    }
}

/// A compiled expression with its Arrow type.
#[derive(Debug, Clone)]
pub struct Typed {
    pub expr: Expr,
    pub ty: DataType,
}

impl Typed {
    pub fn kind(&self) -> Kind {
        Kind::of(&self.ty)
    }
}

/// Compiles expressions that read from one input schema, with the variables in scope.
#[derive(Clone)]
pub struct ExprCompiler<'a> {
    schema: &'a DFSchema,
    /// Variables bound by enclosing `$let` / `$map` / `$filter`, innermost last.
    vars: Vec<(String, Typed)>,
    /// Nesting of element lambdas, to keep their parameter names apart.
    depth: usize,
}

impl<'a> ExprCompiler<'a> {
    pub fn new(schema: &'a DFSchema) -> Self {
        ExprCompiler {
            schema,
            vars: Vec::new(),
            depth: 0,
        }
    }

    /// This compiler with `name` bound to `value`.
    pub fn with_var(&self, name: &str, value: Typed) -> Self {
        let mut c = self.clone();
        c.vars.push((name.to_string(), value));
        c
    }

    /// This compiler inside one more element lambda.
    pub fn nested(&self) -> Self {
        let mut c = self.clone();
        c.depth += 1;
        c
    }

    /// The depth of element lambdas around the expressions being compiled.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The schema expressions are compiled against.
    pub fn schema(&self) -> &DFSchema {
        self.schema
    }

    /// Compiles `e` (found at `at`) to a DataFusion expression.
    pub fn compile(&self, e: &Expression, at: &JsonPath) -> Result<Expr> {
        Ok(self.typed(e, at)?.expr)
    }

    /// Compiles `e` and reports its type.
    pub fn typed(&self, e: &Expression, at: &JsonPath) -> Result<Typed> {
        let expr = match e {
            Expression::Literal(v) => return Ok(literal(v)),
            Expression::Field(path) => {
                let (expr, ty) = field::resolve(self.schema, path, at)?;
                return Ok(Typed { expr, ty });
            }
            Expression::Variable { name, path } => {
                return binding::variable(self, name, path.as_ref(), at);
            }
            Expression::Binding(b) => return binding::compile(self, b, at),
            Expression::Array(items) => {
                if items.is_empty() {
                    return Ok(literal(&Value::Array(vec![])));
                }
                let args = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.compile(item, &at.index(i)))
                    .collect::<Result<Vec<_>>>()?;
                make_array(args)
            }
            Expression::Document(fields) => {
                if fields.is_empty() {
                    return Err(at.err("an empty document cannot be represented as a column"));
                }
                let mut args = Vec::with_capacity(fields.len() * 2);
                for (name, value) in fields {
                    args.push(lit(name.as_str()));
                    args.push(self.compile(value, &at.key(name))?);
                }
                named_struct(args)
            }
            Expression::Enrich(call) => {
                let (udf, _) = crate::enrich::udf(call)?;
                let args = call
                    .inputs
                    .iter()
                    .map(|x| self.compile(x, &call.path))
                    .collect::<Result<Vec<_>>>()?;
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    std::sync::Arc::new(udf),
                    args,
                ))
            }
            // `$zip` reads its inputs one by one, not as one array.
            Expression::Operator(op) if op.name == "$zip" => array::zip(self, op)?,
            Expression::Operator(op) => {
                let args = op
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| self.typed(a, &op.path.index(i)))
                    .collect::<Result<Vec<_>>>()?;
                let at = &op.path;
                match op.family {
                    Family::Arithmetic => arithmetic::compile(op.name, args, at)?,
                    Family::Comparison => comparison::compile(op.name, args, at)?,
                    Family::Boolean => boolean::compile(op.name, args, at)?,
                    Family::Conditional => conditional::compile(op.name, args, at)?,
                    Family::String => string::compile(op.name, args, at)?,
                    Family::Array => array::compile(self, op.name, args, at)?,
                    Family::Type => types::compile(self, op.name, args, at)?,
                    Family::Date => date::compile(op.name, args, at)?,
                }
            }
        };
        self.with_type(expr, at)
    }

    /// Attaches the type DataFusion computes for `expr`.
    pub fn with_type(&self, expr: Expr, at: &JsonPath) -> Result<Typed> {
        let ty = expr
            .get_type(self.schema)
            .map_err(|e| at.err(format!("cannot type this expression: {e}")))?;
        Ok(Typed { expr, ty })
    }
}

/// A JSON constant as a typed literal. Integers that fit are `Int64`, other numbers `Float64`.
pub fn literal(v: &Value) -> Typed {
    let scalar = scalar(v);
    let ty = scalar.data_type();
    Typed {
        expr: lit(scalar),
        ty,
    }
}

/// A JSON value as a DataFusion scalar (objects become structs, arrays lists).
pub fn scalar(v: &Value) -> ScalarValue {
    match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(items) => {
            // Elements of types no one Arrow type holds: the widening rule of documents
            // (`document::infer`), strings as they are and other values as their JSON text.
            if let Shape::Array(elem) = Shape::of(v)
                && matches!(*elem, Shape::Text)
            {
                let texts: Vec<ScalarValue> = items
                    .iter()
                    .map(|x| match x {
                        Value::Null => ScalarValue::Utf8(None),
                        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
                        other => ScalarValue::Utf8(Some(other.to_string())),
                    })
                    .collect();
                return ScalarValue::List(ScalarValue::new_list_nullable(&texts, &DataType::Utf8));
            }
            let values: Vec<ScalarValue> = items.iter().map(scalar).collect();
            let elem_ty = values
                .iter()
                .map(ScalarValue::data_type)
                .find(|t| !t.is_null())
                .unwrap_or(DataType::Utf8);
            // Integers beside fractions widen to doubles, as in documents: `[-3, 2.5]` must
            // not truncate 2.5 to the first element's Int64.
            let elem_ty = if elem_ty == DataType::Int64
                && values.iter().any(|s| matches!(s, ScalarValue::Float64(_)))
            {
                DataType::Float64
            } else {
                elem_ty
            };
            let values: Vec<ScalarValue> = values
                .into_iter()
                .map(|s| {
                    // A typed null where a value does not cast (a list holds one type).
                    let null = || ScalarValue::try_from(&elem_ty).unwrap_or(ScalarValue::Null);
                    if s.is_null() {
                        null()
                    } else {
                        s.cast_to(&elem_ty).unwrap_or_else(|_| null())
                    }
                })
                .collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &elem_ty))
        }
        Value::Object(_) if date_millis(v).is_some() => ScalarValue::TimestampMillisecond(
            date_millis(v).and_then(|r| r.ok()),
            Some("UTC".into()),
        ),
        Value::Object(map) => {
            let mut builder = datafusion::common::scalar::ScalarStructBuilder::new();
            for (k, v) in map {
                let s = scalar(v);
                builder = builder.with_scalar(
                    datafusion::arrow::datatypes::Field::new(k, s.data_type(), true),
                    s,
                );
            }
            builder.build().unwrap_or(ScalarValue::Null)
        }
    }
}

/// A typed NULL of `ty`, so that CASE branches keep one type.
pub fn typed_null(ty: &DataType) -> Expr {
    lit(ScalarValue::try_from(ty).unwrap_or(ScalarValue::Null))
}
