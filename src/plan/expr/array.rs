//! Array expressions: `$size` `$arrayElemAt` `$first` `$last` `$isArray` `$concatArrays`
//! `$reverseArray` `$in` `$slice` `$indexOfArray` `$range`, `$sum` `$avg` `$min` `$max`
//! (over one array argument, or across several arguments), and the set operators
//! `$setUnion` `$setIntersection` `$setDifference` `$setEquals` `$setIsSubset`
//! `$anyElementTrue` `$allElementsTrue` (arrays read as sets; result order unspecified).
//!
//! Indexes are MongoDB's (0-based, negative from the end) translated to DataFusion's list
//! functions (1-based, negative from the end). A null or missing array gives null, where
//! MongoDB raises an error for some operators (README).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::{coalesce, greatest, least};
use datafusion::functions_nested::expr_fn::{
    array_any_match, array_avg, array_concat, array_distinct, array_element, array_except,
    array_has, array_intersect, array_max, array_min, array_position, array_reverse, array_slice,
    array_sort, array_sum, array_union, cardinality, range,
};
use datafusion::functions_nested::expr_fn::{
    array_repeat, array_transform, arrays_zip, make_array,
};
use datafusion::logical_expr::{Expr, cast, lambda, lit, when};

use super::{ExprCompiler, Kind, Typed};
use crate::Result;
use crate::dsl::JsonPath;

pub(super) fn compile(
    _c: &ExprCompiler,
    name: &str,
    args: Vec<Typed>,
    at: &JsonPath,
) -> Result<Expr> {
    let arr = |i: usize| -> Result<Option<&Typed>> {
        let a = &args[i];
        match a.kind() {
            Kind::Array => Ok(Some(a)),
            Kind::Null => Ok(None),
            other => Err(at
                .index(i)
                .err(format!("{name} needs an array, not {}", other.name()))),
        }
    };
    let null = || lit(ScalarValue::Null);
    Ok(match name {
        "$size" => match arr(0)? {
            Some(a) => cast(cardinality(a.expr.clone()), DataType::Int64),
            None => null(),
        },
        "$arrayElemAt" => match arr(0)? {
            Some(a) => {
                number(&args[1], at.index(1), name)?;
                let i = cast(args[1].expr.clone(), DataType::Int64);
                when(
                    i.clone().gt_eq(lit(0i64)),
                    array_element(a.expr.clone(), i.clone() + lit(1i64)),
                )
                .otherwise(array_element(a.expr.clone(), i))?
            }
            None => null(),
        },
        "$first" | "$last" => match arr(0)? {
            Some(a) => array_element(
                a.expr.clone(),
                lit(if name == "$first" { 1i64 } else { -1i64 }),
            ),
            None => null(),
        },
        "$isArray" => match args[0].kind() {
            Kind::Array => args[0].expr.clone().is_not_null(),
            _ => lit(false),
        },
        "$reverseArray" => match arr(0)? {
            Some(a) => array_reverse(a.expr.clone()),
            None => null(),
        },
        "$concatArrays" => {
            let mut lists = Vec::new();
            for i in 0..args.len() {
                match arr(i)? {
                    Some(a) => lists.push(a.expr.clone()),
                    None => return Ok(null()),
                }
            }
            if lists.is_empty() {
                return Err(at.err(
                    "$concatArrays of no arrays is an empty array, which has no element type",
                ));
            }
            // Null if any input is null, as in MongoDB (array_concat would skip it).
            let any_null = lists
                .iter()
                .map(|l| l.clone().is_null())
                .reduce(Expr::or)
                .expect("non-empty");
            when(any_null, null()).otherwise(array_concat(lists))?
        }
        "$in" => match arr(1)? {
            Some(a) => {
                let DataType::List(elem) = &a.ty else {
                    return Ok(lit(false));
                };
                if Kind::of(elem.data_type()) != args[0].kind() {
                    return Ok(lit(false));
                }
                coalesce(vec![
                    array_has(a.expr.clone(), args[0].expr.clone()),
                    lit(false),
                ])
            }
            None => return Err(at.index(1).err("$in needs an array as its second argument")),
        },
        "$indexOfArray" => match arr(0)? {
            Some(a) => {
                let pos = array_position(a.expr.clone(), args[1].expr.clone(), lit(1i64));
                cast(coalesce(vec![pos, lit(0u64)]), DataType::Int64) - lit(1i64)
            }
            None => null(),
        },
        "$slice" => match arr(0)? {
            Some(a) => slice(a, &args[1..], at, name)?,
            None => null(),
        },
        "$range" => {
            for (i, a) in args.iter().enumerate() {
                number(a, at.index(i), name)?;
            }
            let step = args
                .get(2)
                .map_or(lit(1i64), |s| cast(s.expr.clone(), DataType::Int64));
            range(
                cast(args[0].expr.clone(), DataType::Int64),
                cast(args[1].expr.clone(), DataType::Int64),
                step,
            )
        }
        "$sum" | "$avg" | "$min" | "$max" => aggregate(name, args)?,
        "$sortArray" => match arr(0)? {
            Some(a) => {
                let DataType::List(elem) = &a.ty else {
                    unreachable!("an array")
                };
                if matches!(Kind::of(elem.data_type()), Kind::Document | Kind::Array) {
                    return Err(at
                        .index(1)
                        .err("$sortArray of documents or arrays is not supported yet"));
                }
                let ascending = match &args[1].expr {
                    Expr::Literal(ScalarValue::Int64(Some(1)), _) => true,
                    Expr::Literal(ScalarValue::Int64(Some(-1)), _) => false,
                    _ => {
                        return Err(at
                            .index(1)
                            .err("sortBy must be 1 or -1 for an array of values"));
                    }
                };
                // MongoDB's order: null (and missing) first ascending, last descending.
                let (dir, nulls) = if ascending {
                    ("ASC", "NULLS FIRST")
                } else {
                    ("DESC", "NULLS LAST")
                };
                array_sort(a.expr.clone(), lit(dir), lit(nulls))
            }
            None => null(),
        },
        "$setUnion" | "$setIntersection" | "$setDifference" | "$setEquals" | "$setIsSubset" => {
            let mut lists = Vec::new();
            for i in 0..args.len() {
                match arr(i)? {
                    Some(a) => lists.push(a.expr.clone()),
                    None => return Ok(null()),
                }
            }
            let mut it = lists.into_iter();
            let first = it.next().expect("arity checked");
            let empty = |e: Expr| cardinality(e).eq(lit(0u64));
            match name {
                "$setUnion" => array_distinct(it.fold(first, array_union)),
                "$setIntersection" => array_distinct(it.fold(first, array_intersect)),
                "$setDifference" => array_distinct(array_except(first, it.next().expect("2"))),
                "$setIsSubset" => empty(array_except(first, it.next().expect("2"))),
                // Equal as sets: each is a subset of the first, and the first of each.
                _ => it
                    .map(|other| {
                        empty(array_except(first.clone(), other.clone()))
                            .and(empty(array_except(other, first.clone())))
                    })
                    .reduce(Expr::and)
                    .expect("at least two"),
            }
        }
        "$anyElementTrue" | "$allElementsTrue" => match arr(0)? {
            Some(a) => {
                let DataType::List(elem) = &a.ty else {
                    unreachable!("an array")
                };
                let (param, x) = crate::plan::field::element_var(elem, _c.depth());
                let t = super::truthy(&Typed {
                    expr: x,
                    ty: elem.data_type().clone(),
                });
                if name == "$anyElementTrue" {
                    array_any_match(a.expr.clone(), lambda([param], t))
                } else {
                    array_any_match(a.expr.clone(), lambda([param], Expr::Not(Box::new(t))))
                        .is_not_true()
                }
            }
            None => return Err(at.index(0).err(format!("{name} needs an array"))),
        },
        "$arrayToObject" => match arr(0)? {
            Some(a) => {
                let DataType::List(elem) = &a.ty else {
                    unreachable!("an array")
                };
                let (param, x) = crate::plan::field::element_var(elem, _c.depth());
                // `[{k, v}, …]` or `[[name, value], …]` (a pair is one array, so its value
                // must be a string too).
                let (k, v) = match elem.data_type() {
                    DataType::Struct(f) if f.find("k").is_some() && f.find("v").is_some() => (
                        datafusion::functions::core::expr_fn::get_field(x.clone(), "k"),
                        datafusion::functions::core::expr_fn::get_field(x, "v"),
                    ),
                    DataType::List(inner) if Kind::of(inner.data_type()) == Kind::String => (
                        array_element(x.clone(), lit(1i64)),
                        array_element(x, lit(2i64)),
                    ),
                    other => {
                        return Err(at.index(0).err(format!(
                            "$arrayToObject expects [{{\"k\": name, \"v\": value}}, …] or [[name, value], …] with string names, not an array of {}",
                            Kind::of(other).name()
                        )));
                    }
                };
                let keys = array_transform(
                    a.expr.clone(),
                    lambda([param.clone()], cast(k, DataType::Utf8)),
                );
                let values = array_transform(a.expr.clone(), lambda([param], v));
                crate::udf::call(crate::udf::array_to_object::udf(), vec![keys, values])
            }
            None => lit(ScalarValue::Null),
        },
        other => unreachable!("{other} is not an array operator"),
    })
}

fn number(t: &Typed, at: JsonPath, name: &str) -> Result<()> {
    match t.kind() {
        Kind::Number | Kind::Null => Ok(()),
        other => Err(at.err(format!("{name} needs a number here, not {}", other.name()))),
    }
}

/// `$slice: [arr, n]` (first n, or last -n) and `[arr, position, n]`.
fn slice(a: &Typed, rest: &[Typed], at: &JsonPath, name: &str) -> Result<Expr> {
    for (i, r) in rest.iter().enumerate() {
        number(r, at.index(i + 1), name)?;
    }
    let int = |t: &Typed| cast(t.expr.clone(), DataType::Int64);
    let len = cast(cardinality(a.expr.clone()), DataType::Int64);
    let (start, n) = match rest {
        [n] => {
            let n = int(n);
            // First n elements, or the last -n.
            let start = when(n.clone().gt_eq(lit(0i64)), lit(0i64))
                .otherwise(greatest(vec![len.clone() + n.clone(), lit(0i64)]))?;
            let count = when(n.clone().gt_eq(lit(0i64)), n.clone()).otherwise(lit(0i64) - n)?;
            (start, count)
        }
        [pos, n] => {
            let pos = int(pos);
            let start = when(
                pos.clone().gt_eq(lit(0i64)),
                least(vec![pos.clone(), len.clone()]),
            )
            .otherwise(greatest(vec![len.clone() + pos, lit(0i64)]))?;
            (start, int(n))
        }
        _ => unreachable!("arity checked"),
    };
    let empty = when(n.clone().lt_eq(lit(0i64)), lit(true)).otherwise(lit(false))?;
    let sliced = array_slice(a.expr.clone(), start.clone() + lit(1i64), start + n, None);
    // A zero-length slice is an empty array.
    Ok(when(
        empty,
        array_slice(a.expr.clone(), lit(1i64), lit(0i64), None),
    )
    .otherwise(sliced)?)
}

/// `$sum` / `$avg` / `$min` / `$max` as expressions. With one array argument they reduce its
/// numeric elements; otherwise they reduce their arguments. Non-numbers are ignored, as in
/// MongoDB; a `$sum` of nothing is 0.
fn aggregate(name: &str, args: Vec<Typed>) -> Result<Expr> {
    if let [a] = args.as_slice()
        && let DataType::List(elem) = &a.ty
    {
        let numeric = Kind::of(elem.data_type()) == Kind::Number;
        return Ok(match (name, numeric) {
            // array_sum adds in doubles; integers stay integers, as in MongoDB.
            ("$sum", true) if elem.data_type().is_integer() => cast(
                coalesce(vec![array_sum(a.expr.clone()), lit(0i64)]),
                DataType::Int64,
            ),
            ("$sum", true) => coalesce(vec![array_sum(a.expr.clone()), lit(0i64)]),
            ("$sum", false) => lit(0i64),
            (_, false) => lit(ScalarValue::Null),
            ("$avg", true) => array_avg(a.expr.clone()),
            ("$min", true) => array_min(a.expr.clone()),
            _ => array_max(a.expr.clone()),
        });
    }
    let nums: Vec<Expr> = args
        .iter()
        .filter(|a| a.kind() == Kind::Number)
        .map(|a| a.expr.clone())
        .collect();
    if nums.is_empty() {
        return Ok(if name == "$sum" {
            lit(0i64)
        } else {
            lit(ScalarValue::Null)
        });
    }
    Ok(match name {
        "$sum" => nums
            .into_iter()
            .map(|e| coalesce(vec![e, lit(0i64)]))
            .reduce(|a, b| a + b)
            .expect("non-empty"),
        "$avg" => {
            let count = nums
                .iter()
                .map(|e| {
                    when(e.clone().is_null(), lit(0i64))
                        .otherwise(lit(1i64))
                        .expect("CASE")
                })
                .reduce(|a, b| a + b)
                .expect("non-empty");
            let sum = nums
                .into_iter()
                .map(|e| cast(coalesce(vec![e, lit(0i64)]), DataType::Float64))
                .reduce(|a, b| a + b)
                .expect("non-empty");
            when(count.clone().eq(lit(0i64)), lit(ScalarValue::Float64(None)))
                .otherwise(sum / cast(count, DataType::Float64))?
        }
        "$min" => least(nums),
        _ => greatest(nums),
    })
}

/// `$zip: {inputs, useLongestLength, defaults}`: the i-th elements of every input, as arrays.
/// The inputs are zipped by `arrays_zip`; shorter inputs are first padded with their default
/// (`useLongestLength`), or the result is cut to the shortest input. Inputs must share an
/// element type class (a Fluxion array holds one type). A null input gives null.
pub(super) fn zip(c: &ExprCompiler, op: &crate::dsl::expression::Operator) -> Result<Expr> {
    let at = &op.path;
    let crate::dsl::Expression::Array(inputs) = &op.args[0] else {
        return Err(at
            .key("inputs")
            .err("$zip inputs must be an array of array expressions"));
    };
    if inputs.is_empty() {
        return Err(at.key("inputs").err("$zip needs at least one input"));
    }
    let longest = match &op.args[1] {
        crate::dsl::Expression::Literal(serde_json::Value::Bool(b)) => *b,
        _ => {
            return Err(at
                .key("useLongestLength")
                .err("must be a constant true or false"));
        }
    };
    let defaults: Vec<Typed> = match op.args.get(2) {
        None => Vec::new(),
        Some(crate::dsl::Expression::Literal(serde_json::Value::Null)) => Vec::new(),
        Some(crate::dsl::Expression::Array(d)) if longest && d.len() == inputs.len() => d
            .iter()
            .enumerate()
            .map(|(i, e)| c.typed(e, &at.key("defaults").index(i)))
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(at
                .key("defaults")
                .err("defaults needs useLongestLength: true and one value per input"));
        }
    };
    let mut lists = Vec::with_capacity(inputs.len());
    let mut elem_kind: Option<Kind> = None;
    for (i, e) in inputs.iter().enumerate() {
        let here = at.key("inputs").index(i);
        let t = c.typed(e, &here)?;
        match &t.ty {
            DataType::List(f) | DataType::LargeList(f) => {
                let k = Kind::of(f.data_type());
                match elem_kind {
                    Some(prev) if prev != k && k != Kind::Null && prev != Kind::Null => {
                        return Err(here.err(format!(
                            "$zip inputs must hold one type of element: {} and {} (a Fluxion array holds one type)",
                            prev.name(),
                            k.name()
                        )));
                    }
                    Some(prev) if prev != Kind::Null => {}
                    _ => elem_kind = Some(k),
                }
            }
            DataType::Null => {}
            other => {
                return Err(here.err(format!(
                    "$zip inputs must be arrays, not {}",
                    Kind::of(other).name()
                )));
            }
        }
        lists.push(t);
    }
    let lengths: Vec<Expr> = lists.iter().map(|l| cardinality(l.expr.clone())).collect();
    let any_null = lists
        .iter()
        .map(|l| l.expr.clone().is_null())
        .reduce(Expr::or)
        .expect("one input");
    let zipped = if longest {
        let max = greatest(lengths.clone());
        let padded: Vec<Expr> = lists
            .iter()
            .zip(&lengths)
            .enumerate()
            .map(|(i, (l, n))| {
                let fill = defaults
                    .get(i)
                    .map_or(lit(ScalarValue::Null), |d| d.expr.clone());
                array_concat(vec![
                    l.expr.clone(),
                    array_repeat(fill, cast(max.clone() - n.clone(), DataType::Int64)),
                ])
            })
            .collect();
        arrays_zip(padded)
    } else {
        array_slice(
            arrays_zip(lists.iter().map(|l| l.expr.clone()).collect()),
            lit(1i64),
            cast(least(lengths), DataType::Int64),
            None,
        )
    };
    let zipped_ty = c.with_type(zipped.clone(), at)?;
    let DataType::List(row) = &zipped_ty.ty else {
        return Err(at.err("$zip: unexpected zipped type"));
    };
    let (param, var) = super::field::element_var(row, c.depth());
    let items: Vec<Expr> = (1..=lists.len())
        .map(|k| datafusion::functions::core::expr_fn::get_field(var.clone(), k.to_string()))
        .collect();
    let out = array_transform(zipped, lambda([param], make_array(items)));
    Ok(when(any_null, lit(ScalarValue::Null)).otherwise(out)?)
}
