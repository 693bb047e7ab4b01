//! `mongo_regex_find_all(input, regex, options)`: every non-overlapping match of `regex` in
//! `input` as `{match, idx, captures}` — `$regexFindAll`, and `$regexFind` (its first element).
//!
//! `idx` counts code points, as MongoDB does; `captures` holds one entry per group, null for
//! a group that did not take part. Options are MongoDB's `i`, `m`, `s`, `x`. A null input or
//! regex gives an empty array.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ScalarUDF;
use regex::Regex;

use super::KernelUdf;
use super::args::{get, strings};

/// The fields of one match.
pub fn match_fields() -> Fields {
    Fields::from(vec![
        Field::new("match", DataType::Utf8, true),
        Field::new("idx", DataType::Int64, true),
        Field::new(
            "captures",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
    ])
}

/// The result type: a list of matches.
pub fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(match_fields()),
        true,
    )))
}

/// The function.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_regex_find_all",
            vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
            result_type(),
            kernel,
        )))
    });
    UDF.clone()
}

/// Compiles a MongoDB pattern with its options.
pub fn compile(pattern: &str, options: &str) -> Result<Regex, String> {
    if let Some(bad) = options.chars().find(|c| !"imsx".contains(*c)) {
        return Err(format!(
            "unknown regex option '{bad}' (expected i, m, s, x)"
        ));
    }
    let full = if options.is_empty() {
        pattern.to_string()
    } else {
        format!("(?{options}){pattern}")
    };
    Regex::new(&full).map_err(|e| e.to_string())
}

fn kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    let (input, pattern, options) = (strings(&a[0]), strings(&a[1]), strings(&a[2]));
    let mut out =
        ListBuilder::new(StructBuilder::from_fields(match_fields(), 0)).with_field(Arc::new(
            Field::new_list_field(DataType::Struct(match_fields()), true),
        ));
    let mut last: Option<(String, String, Regex)> = None;
    for i in 0..input.len() {
        let (Some(s), Some(p)) = (get(input, i), get(pattern, i)) else {
            out.append(true);
            continue;
        };
        let o = get(options, i).unwrap_or("");
        if last.as_ref().is_none_or(|(lp, lo, _)| lp != p || lo != o) {
            let re = compile(p, o)
                .map_err(|e| DataFusionError::Execution(format!("invalid regex \"{p}\": {e}")))?;
            last = Some((p.to_string(), o.to_string(), re));
        }
        let re = &last.as_ref().expect("set above").2;
        let matches = out.values();
        for caps in re.captures_iter(s) {
            let whole = caps.get(0).expect("group 0 always matches");
            matches
                .field_builder::<StringBuilder>(0)
                .expect("match")
                .append_value(whole.as_str());
            matches
                .field_builder::<Int64Builder>(1)
                .expect("idx")
                .append_value(s[..whole.start()].chars().count() as i64);
            let groups = matches
                .field_builder::<ListBuilder<Box<dyn datafusion::arrow::array::ArrayBuilder>>>(2)
                .expect("captures");
            let values = groups
                .values()
                .as_any_mut()
                .downcast_mut::<StringBuilder>()
                .expect("strings");
            for g in caps.iter().skip(1) {
                values.append_option(g.map(|m| m.as_str()));
            }
            groups.append(true);
            matches.append(true);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::util::display::array_value_to_string;

    #[test]
    fn finds_every_match_with_code_point_indexes_and_captures() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![Some("é-a1 b22"), None]));
        let pattern: ArrayRef = Arc::new(StringArray::from(vec!["([a-z])(\\d+)|(x)", "a"]));
        let options: ArrayRef = Arc::new(StringArray::from(vec!["", ""]));
        let out = kernel(&[input, pattern, options]).unwrap();
        assert_eq!(
            array_value_to_string(&out, 0).unwrap(),
            "[{match: a1, idx: 2, captures: [a, 1, ]}, {match: b22, idx: 5, captures: [b, 22, ]}]"
        );
        assert_eq!(array_value_to_string(&out, 1).unwrap(), "[]");
        assert!(compile("a", "g").is_err());
    }
}
