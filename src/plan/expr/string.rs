//! String expressions: `$concat` `$toUpper` `$toLower`, `$trim` `$ltrim` `$rtrim`,
//! `$substr` `$substrBytes` `$substrCP`, `$strLenBytes` `$strLenCP`, `$split`,
//! `$indexOfBytes` `$indexOfCP`, `$strcasecmp`, `$regexMatch`, `$replaceOne` `$replaceAll`.
//!
//! Positions and lengths are counted in code points for both the `Bytes` and `CP` spellings
//! (they agree on ASCII; README). Patterns and search strings of `$regexMatch` and
//! `$replaceOne` must be constants, so they are checked when planning.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions::expr_fn::{
    btrim, character_length, lower, ltrim, octet_length, regexp_like, regexp_replace, replace,
    rtrim, strpos, substring, upper,
};
use datafusion::functions_nested::expr_fn::string_to_array;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, cast, lit, when};

/// What `$trim` removes when no `chars` are given: MongoDB's whitespace characters.
const WHITESPACE: &str = " \t\n\r\u{0B}\u{0C}\u{00A0}\u{0}";

use super::{Kind, Typed};
use crate::Result;
use crate::dsl::JsonPath;

pub(super) fn compile(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    if matches!(name, "$regexFind" | "$regexFindAll") {
        return regex_find(name, args, at);
    }
    match name {
        // $concat is null when any argument is null or missing; the SQL `||` operator has
        // exactly that behaviour (the `concat` function would skip nulls).
        "$concat" => {
            for (i, a) in args.iter().enumerate() {
                if !matches!(a.kind(), Kind::String | Kind::Null) {
                    return Err(at.index(i).err(format!(
                        "$concat only supports strings, not {}",
                        a.kind().name()
                    )));
                }
            }
            Ok(args
                .into_iter()
                .map(|a| cast(a.expr, DataType::Utf8))
                .reduce(|a, b| {
                    Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(a),
                        Operator::StringConcat,
                        Box::new(b),
                    ))
                })
                .unwrap_or(lit("")))
        }
        // MongoDB converts numbers to strings here and turns null into "".
        "$toUpper" | "$toLower" => {
            let a = args.into_iter().next().expect("arity checked");
            if matches!(a.kind(), Kind::Document | Kind::Array) {
                return Err(at.index(0).err(format!(
                    "{name} cannot convert an {} to a string",
                    a.kind().name()
                )));
            }
            let s = cast(a.expr, DataType::Utf8);
            let f = if name == "$toUpper" {
                upper(s)
            } else {
                lower(s)
            };
            Ok(coalesce(vec![f, lit("")]))
        }
        _ => more(name, args, at),
    }
}

fn more(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    for (i, a) in args.iter().enumerate() {
        let ok = match (name, i) {
            // Positions, lengths: numbers.
            ("$substr" | "$substrBytes" | "$substrCP", 1 | 2)
            | ("$indexOfBytes" | "$indexOfCP", 2) => {
                matches!(a.kind(), Kind::Number | Kind::Null)
            }
            _ => matches!(a.kind(), Kind::String | Kind::Null),
        };
        if !ok {
            return Err(at
                .index(i)
                .err(format!("{name} does not take a {} here", a.kind().name())));
        }
    }
    let mut it = args.into_iter().map(|a| a.expr);
    let mut next = || it.next();
    let int = |e: Expr| cast(e, DataType::Int64);
    Ok(match name {
        "$trim" | "$ltrim" | "$rtrim" => {
            let input = next().expect("arity checked");
            let chars = next().unwrap_or(lit(WHITESPACE));
            match name {
                "$trim" => btrim(vec![input, chars]),
                "$ltrim" => ltrim(vec![input, chars]),
                _ => rtrim(vec![input, chars]),
            }
        }
        "$substr" | "$substrBytes" | "$substrCP" => {
            let (s, start, len) = (
                next().expect("3"),
                int(next().expect("3")),
                int(next().expect("3")),
            );
            // A negative length means "to the end"; a null or missing string gives "".
            let whole = character_length(s.clone());
            let len =
                when(len.clone().lt(lit(0i64)), cast(whole, DataType::Int64)).otherwise(len)?;
            coalesce(vec![substring(s, start + lit(1i64), len), lit("")])
        }
        "$strLenCP" => cast(character_length(next().expect("1")), DataType::Int64),
        "$strLenBytes" => cast(octet_length(next().expect("1")), DataType::Int64),
        "$split" => {
            let (s, sep) = (next().expect("2"), next().expect("2"));
            string_to_array(s, sep, lit(ScalarValue::Utf8(None)))
        }
        "$indexOfBytes" | "$indexOfCP" => {
            let (s, sub) = (next().expect("2"), next().expect("2"));
            match next() {
                None => cast(strpos(s, sub), DataType::Int64) - lit(1i64),
                Some(start) => {
                    let start = int(start);
                    let found = cast(
                        strpos(
                            substring(s, start.clone() + lit(1i64), lit(i32::MAX as i64)),
                            sub,
                        ),
                        DataType::Int64,
                    );
                    when(found.clone().is_null(), lit(ScalarValue::Int64(None)))
                        .when(found.clone().gt(lit(0i64)), found + start - lit(1i64))
                        .otherwise(lit(-1i64))?
                }
            }
        }
        "$strcasecmp" => {
            let (a, b) = (next().expect("2"), next().expect("2"));
            let (a, b) = (
                upper(coalesce(vec![a, lit("")])),
                upper(coalesce(vec![b, lit("")])),
            );
            when(a.clone().lt(b.clone()), lit(-1i64))
                .when(a.eq(b), lit(0i64))
                .otherwise(lit(1i64))?
        }
        "$regexMatch" => {
            let input = next().expect("2");
            let pattern = constant(next().expect("2"), at.index(1), name)?;
            if let Err(e) = regex::Regex::new(&pattern) {
                return Err(at.index(1).err(format!("invalid regex \"{pattern}\": {e}")));
            }
            let flags = next().map(|o| constant(o, at.index(2), name)).transpose()?;
            if let Some(bad) = flags
                .as_deref()
                .and_then(|f| f.chars().find(|c| !"imsx".contains(*c)))
            {
                return Err(at.index(2).err(format!(
                    "unsupported regex option '{bad}' (supported: i, m, s, x)"
                )));
            }
            let flags = flags.filter(|f| !f.is_empty()).map(lit);
            coalesce(vec![regexp_like(input, lit(pattern), flags), lit(false)])
        }
        "$replaceOne" => {
            let input = next().expect("3");
            let find = constant(next().expect("3"), at.index(1), name)?;
            let with = constant(next().expect("3"), at.index(2), name)?;
            // The first occurrence, as a literal: escape the pattern and the replacement.
            regexp_replace(
                input,
                lit(regex::escape(&find)),
                lit(with.replace('$', "$$")),
                None,
            )
        }
        "$replaceAll" => {
            let (input, find, with) = (next().expect("3"), next().expect("3"), next().expect("3"));
            replace(input, find, with)
        }
        other => unreachable!("{other} is not a string operator"),
    })
}

/// The string constant `e` (an operand that must be known when planning).
/// `$regexFind` / `$regexFindAll`: `{match, idx, captures}` of the first / every match, by
/// Fluxion's `mongo_regex_find_all` function. The regex and options may vary per document;
/// constant ones are checked now.
fn regex_find(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    for (i, a) in args.iter().enumerate() {
        if !matches!(a.kind(), Kind::String | Kind::Null) {
            return Err(at
                .index(i)
                .err(format!("{name} needs strings, not {}", a.kind().name())));
        }
    }
    let text = |i: usize| match args.get(i) {
        Some(a) if a.kind() == Kind::String => cast(a.expr.clone(), DataType::Utf8),
        _ => lit(ScalarValue::Utf8(if i == 2 {
            Some(String::new())
        } else {
            None
        })),
    };
    let literal = |i: usize| match args.get(i).map(|a| &a.expr) {
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _)) => Some(s.clone()),
        _ => None,
    };
    if let Some(pattern) = literal(1) {
        let options = literal(2).unwrap_or_default();
        crate::udf::regex_find::compile(&pattern, &options)
            .map_err(|e| at.index(1).err(format!("invalid regex \"{pattern}\": {e}")))?;
    }
    let all = crate::udf::call(
        crate::udf::regex_find::udf(),
        vec![text(0), text(1), text(2)],
    );
    Ok(match name {
        "$regexFindAll" => all,
        _ => datafusion::functions_nested::expr_fn::array_element(all, lit(1i64)),
    })
}

fn constant(e: Expr, at: JsonPath, name: &str) -> Result<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Ok(s),
        _ => Err(at.err(format!("{name} needs a constant string here"))),
    }
}
