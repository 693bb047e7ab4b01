//! Type expressions: `$type`, `$isNumber`, and the conversions `$toString` `$toInt` `$toLong`
//! `$toDouble` `$toDecimal` `$toBool`.
//!
//! A column has one Arrow type, so most answers are decided when planning; only nulls (and
//! the int/long split of 64-bit integers) are looked at per value. Conversions that MongoDB
//! rejects with an error (`$toInt: "abc"`) give null here (`TRY_CAST`), documented in the
//! README.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::{coalesce, get_field, named_struct};
use datafusion::functions_nested::expr_fn::make_array;
use datafusion::logical_expr::{Expr, cast, lit, try_cast, when};

use super::{Kind, Typed};
use crate::Result;
use crate::dsl::JsonPath;

pub(super) fn compile(
    c: &super::ExprCompiler,
    name: &str,
    args: Vec<Typed>,
    at: &JsonPath,
) -> Result<Expr> {
    match name {
        "$convert" => return convert(c, args, at),
        "$getField" => return get_field_of(args, at),
        "$mergeObjects" => return merge_objects(args, at),
        "$setField" | "$unsetField" => return set_field(name, args, at),
        "$objectToArray" => return object_to_array(c, args, at),
        _ => {}
    }
    let a = args.into_iter().next().expect("arity checked");
    let x = a.expr.clone();
    let when_present = |present: Expr| -> Result<Expr> {
        Ok(when(x.clone().is_null(), lit(ScalarValue::Null)).otherwise(present)?)
    };
    Ok(match name {
        "$type" => {
            if a.ty == DataType::Null {
                return Ok(lit("missing"));
            }
            let name = match a.kind() {
                Kind::Number if a.ty.is_integer() => {
                    // JSON integers are 64-bit here; MongoDB stores those that fit as int.
                    let fits = x
                        .clone()
                        .between(lit(i32::MIN as i64), lit(i32::MAX as i64));
                    when(fits, lit("int")).otherwise(lit("long"))?
                }
                Kind::Number
                    if matches!(a.ty, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
                {
                    lit("decimal")
                }
                Kind::Number => lit("double"),
                Kind::String => lit("string"),
                Kind::Document => lit("object"),
                Kind::Array => lit("array"),
                Kind::Bool => lit("bool"),
                Kind::Date => lit("date"),
                Kind::Null => lit("null"),
                Kind::Other => return Err(at.index(0).err("$type of a value Fluxion cannot name")),
            };
            when(x.is_null(), lit("null")).otherwise(name)?
        }
        "$isNumber" => match a.kind() {
            Kind::Number => x.is_not_null(),
            _ => lit(false),
        },
        "$toString" => match a.kind() {
            Kind::Null => lit(ScalarValue::Utf8(None)),
            Kind::String => x,
            // A whole double prints without ".0", as MongoDB does.
            Kind::Number if !a.ty.is_integer() => {
                let whole = x
                    .clone()
                    .eq(datafusion::functions::math::expr_fn::trunc(vec![x.clone()]))
                    .and(x.clone().between(lit(-9.0e15), lit(9.0e15)));
                when(
                    whole,
                    cast(cast(x.clone(), DataType::Int64), DataType::Utf8),
                )
                .otherwise(cast(x, DataType::Utf8))?
            }
            Kind::Number | Kind::Bool => cast(x, DataType::Utf8),
            // ISO-8601 with milliseconds, as MongoDB prints a date.
            Kind::Date => {
                datafusion::functions::datetime::expr_fn::to_char(x, lit("%Y-%m-%dT%H:%M:%S%.3fZ"))
            }
            other => {
                return Err(at.index(0).err(format!(
                    "$toString cannot convert an {} to a string",
                    other.name()
                )));
            }
        },
        "$toInt" | "$toLong" => match a.kind() {
            Kind::Null => lit(ScalarValue::Int64(None)),
            Kind::Number | Kind::Bool => cast(x, DataType::Int64),
            Kind::String => try_cast(x, DataType::Int64),
            // Milliseconds since the epoch (MongoDB allows this for $toLong only).
            Kind::Date if name == "$toLong" => cast(x, DataType::Int64),
            other => {
                return Err(at.index(0).err(format!(
                    "{name} cannot convert an {} to a number",
                    other.name()
                )));
            }
        },
        "$toDouble" | "$toDecimal" => match a.kind() {
            Kind::Null => lit(ScalarValue::Float64(None)),
            Kind::Number | Kind::Bool => cast(x, DataType::Float64),
            Kind::String => try_cast(x, DataType::Float64),
            Kind::Date => cast(cast(x, DataType::Int64), DataType::Float64),
            other => {
                return Err(at.index(0).err(format!(
                    "{name} cannot convert an {} to a number",
                    other.name()
                )));
            }
        },
        "$toBool" => match a.kind() {
            Kind::Null => lit(ScalarValue::Boolean(None)),
            Kind::Bool => x,
            Kind::Number => x.clone().not_eq(lit(0i64)),
            // Every string, document, array and date is true.
            _ => when_present(lit(true))?,
        },
        other => unreachable!("{other} is not a type operator"),
    })
}

/// `$convert: {input, to, onError, onNull}`: the `$toX` conversion for `to`, with `onNull`
/// for a null or missing input and `onError` for a value that does not convert.
fn convert(c: &super::ExprCompiler, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    let mut it = args.into_iter();
    let input = it.next().expect("arity checked");
    let to = it.next().expect("arity checked");
    let on_error = it.next();
    let on_null = it.next();
    let op = match &to.expr {
        Expr::Literal(ScalarValue::Utf8(Some(t)), _) => match t.as_str() {
            "int" => "$toInt",
            "long" => "$toLong",
            "double" => "$toDouble",
            "decimal" => "$toDecimal",
            "string" => "$toString",
            "bool" => "$toBool",
            "date" => "$toDate",
            other => {
                return Err(at
                    .key("to")
                    .err(format!("converting to \"{other}\" is not supported yet")));
            }
        },
        Expr::Literal(ScalarValue::Int64(Some(n)), _) => match n {
            16 => "$toInt",
            18 => "$toLong",
            1 => "$toDouble",
            19 => "$toDecimal",
            2 => "$toString",
            8 => "$toBool",
            9 => "$toDate",
            other => {
                return Err(at.key("to").err(format!(
                    "converting to BSON type {other} is not supported yet"
                )));
            }
        },
        _ => {
            return Err(at
                .key("to")
                .err("expects a constant type name, e.g. \"int\""));
        }
    };
    let x = input.expr.clone();
    let converted = if op == "$toDate" {
        // With onError, text that does not parse becomes null (then onError), not an error.
        super::date::to_date(&input, on_error.is_none(), at)?
    } else {
        compile(c, op, vec![input], at)?
    };
    let mut case = datafusion::logical_expr::when(
        x.clone().is_null(),
        on_null.map_or(lit(ScalarValue::Null), |n| n.expr),
    );
    if let Some(e) = on_error {
        case = case.when(converted.clone().is_null(), e.expr);
    }
    Ok(case.otherwise(converted)?)
}

/// `$getField: {field, input}`: a sub-document's field by a constant name.
fn get_field_of(args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    let mut it = args.into_iter();
    let field = it.next().expect("arity checked");
    let input = it.next().expect("the parser supplies $$CURRENT");
    let Expr::Literal(ScalarValue::Utf8(Some(name)), _) = &field.expr else {
        return Err(at.key("field").err("expects a constant field name"));
    };
    match &input.ty {
        DataType::Struct(fields) if fields.iter().any(|f| f.name() == name) => Ok(
            datafusion::functions::core::expr_fn::get_field(input.expr, name.as_str()),
        ),
        DataType::Struct(_) | DataType::Null => Ok(lit(ScalarValue::Null)),
        other => Err(at.key("input").err(format!(
            "expects a document, not {}",
            Kind::of(other).name()
        ))),
    }
}

/// `$mergeObjects`: the fields of all documents, a later document's value winning; null and
/// missing arguments are skipped. The field set is known when planning, so each output field
/// is a `coalesce` of its sources, latest first.
fn merge_objects(args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    let mut fields: Vec<(String, Vec<Expr>)> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        match &a.ty {
            DataType::Struct(fs) => {
                for f in fs {
                    let value = get_field(a.expr.clone(), f.name().as_str());
                    match fields.iter_mut().find(|(n, _)| n == f.name()) {
                        Some((_, sources)) => sources.insert(0, value),
                        None => fields.push((f.name().clone(), vec![value])),
                    }
                }
            }
            DataType::Null => {}
            other => {
                return Err(at.index(i).err(format!(
                    "$mergeObjects needs documents, not {}",
                    Kind::of(other).name()
                )));
            }
        }
    }
    if fields.is_empty() {
        return Err(at.err(
            "$mergeObjects of no fields is an empty document, which Fluxion cannot represent",
        ));
    }
    let mut pairs = Vec::with_capacity(fields.len() * 2);
    for (name, sources) in fields {
        pairs.push(lit(name));
        pairs.push(if sources.len() == 1 {
            sources.into_iter().next().expect("one")
        } else {
            coalesce(sources)
        });
    }
    Ok(named_struct(pairs))
}

/// `$objectToArray`: `[{"k": name, "v": value}, …]` in field order. An array holds one type,
/// so the fields' values must share a type class (numbers are widened to double).
fn object_to_array(c: &super::ExprCompiler, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    let a = args.into_iter().next().expect("arity checked");
    let DataType::Struct(fs) = &a.ty else {
        return match &a.ty {
            DataType::Null => Ok(lit(ScalarValue::Null)),
            // A document with data for names (`$arrayToObject`): its entries as {k, v}.
            DataType::Map(..) => {
                let entries = datafusion::functions_nested::expr_fn::map_entries(a.expr.clone());
                let DataType::List(elem) = c.with_type(entries.clone(), at)?.ty else {
                    unreachable!("map entries are a list")
                };
                let (param, x) = crate::plan::field::element_var(&elem, c.depth());
                let kv = named_struct(vec![
                    lit("k"),
                    get_field(x.clone(), "key"),
                    lit("v"),
                    get_field(x, "value"),
                ]);
                Ok(datafusion::functions_nested::expr_fn::array_transform(
                    entries,
                    datafusion::logical_expr::lambda([param], kv),
                ))
            }
            other => Err(at.index(0).err(format!(
                "$objectToArray needs a document, not {}",
                Kind::of(other).name()
            ))),
        };
    };
    let kinds: Vec<Kind> = fs.iter().map(|f| Kind::of(f.data_type())).collect();
    if kinds.windows(2).any(|w| w[0] != w[1]) {
        return Err(at
            .index(0)
            .err("$objectToArray needs fields of one type (a Fluxion array holds one type)"));
    }
    let numbers = kinds.first() == Some(&Kind::Number);
    let entries: Vec<Expr> = fs
        .iter()
        .map(|f| {
            let v = get_field(a.expr.clone(), f.name().as_str());
            let v = if numbers {
                cast(v, DataType::Float64)
            } else {
                v
            };
            named_struct(vec![lit("k"), lit(f.name().as_str()), lit("v"), v])
        })
        .collect();
    Ok(when(a.expr.clone().is_null(), lit(ScalarValue::Null)).otherwise(make_array(entries))?)
}

/// `$setField: {field, input, value}` and `$unsetField: {field, input}`: the document with
/// one field (a constant name) replaced, added at the end, or removed (`value: "$$REMOVE"`).
fn set_field(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    let mut it = args.into_iter();
    let field = it.next().expect("arity checked");
    let input = it.next().expect("arity checked");
    let value = if name == "$unsetField" {
        None
    } else {
        it.next()
    };
    let Expr::Literal(ScalarValue::Utf8(Some(field)), _) = &field.expr else {
        return Err(at.key("field").err("expects a constant field name"));
    };
    let DataType::Struct(fs) = &input.ty else {
        return match &input.ty {
            DataType::Null => Ok(lit(ScalarValue::Null)),
            other => Err(at.key("input").err(format!(
                "expects a document, not {}",
                Kind::of(other).name()
            ))),
        };
    };
    // `$$REMOVE` (a typed-less null) removes the field, as `$unsetField` does.
    let value = value.filter(|v| {
        v.ty != DataType::Null || !matches!(v.expr, Expr::Literal(ScalarValue::Null, _))
    });
    let mut pairs = Vec::new();
    let mut placed = false;
    for f in fs {
        if f.name() == field {
            if let Some(v) = &value {
                pairs.push(lit(field.as_str()));
                pairs.push(v.expr.clone());
                placed = true;
            }
            continue;
        }
        pairs.push(lit(f.name().as_str()));
        pairs.push(get_field(input.expr.clone(), f.name().as_str()));
    }
    if let (false, Some(v)) = (placed, &value) {
        pairs.push(lit(field.as_str()));
        pairs.push(v.expr.clone());
    }
    if pairs.is_empty() {
        return Err(at.err("the result would be an empty document, which Fluxion cannot represent"));
    }
    Ok(
        when(input.expr.clone().is_null(), lit(ScalarValue::Null))
            .otherwise(named_struct(pairs))?,
    )
}
