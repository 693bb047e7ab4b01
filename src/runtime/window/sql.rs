//! The SQL spelling of stream windows, read from the query's syntax tree: one window function
//! in the top-level `GROUP BY` —
//!
//! - `tumble(<time>, INTERVAL '<n>' <unit>)`
//! - `hop(<time>, INTERVAL '<hop>' <unit>, INTERVAL '<size>' <unit>)`
//! - `session(<time>, INTERVAL '<gap>' <unit>)`, partitioned by the other `GROUP BY` columns
//!
//! with optional named arguments `allowed_lateness => INTERVAL …`, `idle_timeout => INTERVAL …`
//! and (tumble, hop) `offset => INTERVAL …`; `<time>` is a column (the event time) or
//! `PROCTIME()` (processing time). It compiles to the same window operator as
//! `$tumblingWindow` / `$hoppingWindow` / `$sessionWindow`, and the rest of the query runs over
//! each window's rows when the window closes, with the window's bounds as the columns
//! `window_start` and `window_end` (the window function in `GROUP BY` stands for both).
//!
//! ```sql
//! SELECT window_start, max(price) AS price FROM bid
//! GROUP BY tumble("dateTime", INTERVAL '10' SECOND, allowed_lateness => INTERVAL '2' SECOND)
//! ```

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, SetExpr,
    Statement, visit_expressions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde_json::{Value, json};

use crate::dsl::Pipeline;
use crate::dsl::stream_window::{Boundary, StreamWindow, WindowKind};
use crate::{Error, Result};

/// A windowed SQL query, taken apart.
#[derive(Debug, Clone)]
pub struct SqlWindow {
    pub window: StreamWindow,
    /// The event time, as an expression (`"$dateTime"`); `None` for `PROCTIME()`.
    pub time_field: Option<Value>,
    /// The query run over each window's rows (`window_start`, `window_end` in place of the
    /// window function).
    pub inner: String,
    /// Whether the query, run over many windows' rows at once, gives each window's rows as
    /// run one window at a time: one table, no join, subquery, window function, `LIMIT`,
    /// `OFFSET` or `ORDER BY` (those would reach across windows).
    pub per_row_group: bool,
}

/// An identifier as DataFusion reads it: unquoted names fold to lower case.
fn normalized(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_ascii_lowercase(),
    }
}

const NAMES: [&str; 3] = ["tumble", "hop", "session"];

fn err(message: impl Into<String>) -> Error {
    Error::config("sql", message)
}

/// The window function `e` calls, if it is one.
fn window_call(e: &Expr) -> Option<(&str, &ast::Function)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    NAMES.iter().find(|n| **n == name).map(|n| (*n, f))
}

/// The window of `sql`, if it groups by `tumble(…)`, `hop(…)` or `session(…)`.
pub fn parse(sql: &str) -> Result<Option<SqlWindow>> {
    // A query the parser cannot read is DataFusion's to report.
    let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Ok(None);
    };
    let mut calls = 0;
    let _ = visit_expressions(&statements, |e: &Expr| {
        if window_call(e).is_some() {
            calls += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    if calls == 0 {
        return Ok(None);
    }
    let placement = || {
        err(
            "a window function (tumble, hop, session) goes in the GROUP BY of the top-level SELECT, once",
        )
    };
    if calls > 1 || statements.len() != 1 {
        return Err(placement());
    }
    let mut reaching = false;
    let _ = visit_expressions(&statements, |e: &Expr| {
        reaching |= match e {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => true,
            Expr::Function(f) => f.over.is_some(),
            _ => false,
        };
        ControlFlow::<()>::Continue(())
    });
    let Statement::Query(query) = &mut statements[0] else {
        return Err(placement());
    };
    reaching |= query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(placement());
    };
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else {
        return Err(placement());
    };
    let Some(at) = keys.iter().position(|k| window_call(k).is_some()) else {
        return Err(placement());
    };
    reaching |= select.from.len() != 1
        || select
            .from
            .iter()
            .any(|t| !t.joins.is_empty() || !matches!(t.relation, ast::TableFactor::Table { .. }));
    // Columns may be qualified by a table's name or alias.
    let tables: Vec<String> = select
        .from
        .iter()
        .filter_map(|t| match &t.relation {
            ast::TableFactor::Table { name, alias, .. } => match alias {
                Some(a) => Some(normalized(&a.name)),
                None => name.0.last()?.as_ident().map(normalized),
            },
            _ => None,
        })
        .collect();
    let (name, call) = window_call(&keys[at]).expect("found");
    let mut window = window_of(name, call)?;
    let time_field = time_of(name, call, &mut window, &tables)?;
    // The other keys partition sessions.
    if let WindowKind::Session { .. } = window.kind {
        let mut by = serde_json::Map::new();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| *i != at) {
            let path = column_path(k, &tables).ok_or_else(|| {
                err(format!(
                    "session(…) is partitioned by the other GROUP BY keys, which must be columns: {k}"
                ))
            })?;
            by.insert(format!("k{i}"), json!(format!("${path}")));
        }
        window.partition_by = (!by.is_empty()).then_some(Value::Object(by));
    }
    keys.splice(
        at..=at,
        ["window_start", "window_end"].map(|n| Expr::Identifier(Ident::new(n))),
    );
    Ok(Some(SqlWindow {
        window,
        time_field,
        inner: statements[0].to_string(),
        per_row_group: !reaching,
    }))
}

/// The window the call describes (kind, sizes, named options).
fn window_of(name: &str, call: &ast::Function) -> Result<StreamWindow> {
    let FunctionArguments::List(list) = &call.args else {
        return Err(err(format!("{name}(…) needs arguments")));
    };
    let mut intervals = Vec::new();
    let mut lateness = 0;
    let mut idle = None;
    let mut offset = 0;
    let mut drop_late = false;
    for arg in list.args.iter().skip(1) {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => intervals.push(millis(e, name)?),
            FunctionArg::Named {
                name: option,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => match option.value.to_ascii_lowercase().as_str() {
                "allowed_lateness" => lateness = millis(e, name)?,
                "idle_timeout" => idle = Some(millis(e, name)?).filter(|ms| *ms > 0),
                "offset" if name != "session" => offset = millis(e, name)?,
                "late_data" => {
                    drop_late = match e {
                        Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s) if s == "drop" => true,
                            ast::Value::SingleQuotedString(s) if s == "dead_letter" => false,
                            _ => {
                                return Err(err(format!(
                                    "{name}(…): late_data is 'dead_letter' or 'drop'"
                                )));
                            }
                        },
                        _ => {
                            return Err(err(format!(
                                "{name}(…): late_data is 'dead_letter' or 'drop'"
                            )));
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "{name}(…): unknown option {other} (expected allowed_lateness, idle_timeout, late_data{})",
                        if name == "session" { "" } else { ", offset" }
                    )));
                }
            },
            other => return Err(err(format!("{name}(…): unexpected argument {other}"))),
        }
    }
    let (kind, size) = match (name, intervals.as_slice()) {
        ("tumble", [size]) => (WindowKind::Tumbling, *size),
        ("session", [gap]) => (WindowKind::Session { gap_ms: *gap }, *gap),
        ("hop", [hop, size]) => {
            if *hop <= 0 || hop > size || size % hop != 0 {
                return Err(err(
                    "hop(…): the hop must be positive, at most the size, and divide it evenly",
                ));
            }
            (WindowKind::Hopping { hop_ms: *hop }, *size)
        }
        _ => {
            return Err(err(
                "tumble takes a time and one interval, hop a time, the hop and the size, session a time and the gap",
            ));
        }
    };
    if size <= 0 {
        return Err(err(format!("{name}(…): the interval must be positive")));
    }
    Ok(StreamWindow {
        kind,
        size_ms: size,
        offset_ms: offset,
        allowed_lateness_ms: lateness,
        pipeline: Pipeline { stages: Vec::new() },
        partition_by: None,
        boundary: Boundary::EventTime,
        idle_timeout_ms: idle,
        drop_late,
    })
}

/// The event time the call's first argument names (a column), or processing time.
fn time_of(
    name: &str,
    call: &ast::Function,
    window: &mut StreamWindow,
    tables: &[String],
) -> Result<Option<Value>> {
    let first = match &call.args {
        FunctionArguments::List(list) => list.args.first(),
        _ => None,
    };
    let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) = first else {
        return Err(err(format!("{name}(…) starts with the time column")));
    };
    if let Expr::Function(f) = e
        && f.name.to_string().eq_ignore_ascii_case("proctime")
    {
        window.boundary = Boundary::ProcessingTime;
        return Ok(None);
    }
    let path = column_path(e, tables).ok_or_else(|| {
        err(format!(
            "{name}(…) starts with the time column or PROCTIME(), not {e}"
        ))
    })?;
    Ok(Some(Value::String(format!("${path}"))))
}

/// A column as a field path: `a`; `t.a` when `t` is one of `tables`; else `a.b` is a nested
/// field.
fn column_path(e: &Expr, tables: &[String]) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(normalized(i)),
        Expr::CompoundIdentifier(parts) => {
            let skip = usize::from(parts.len() > 1 && tables.contains(&normalized(&parts[0])));
            Some(
                parts[skip..]
                    .iter()
                    .map(normalized)
                    .collect::<Vec<_>>()
                    .join("."),
            )
        }
        _ => None,
    }
}

/// An interval (`INTERVAL '10' SECOND`, `INTERVAL '10 seconds'`) in milliseconds.
fn millis(e: &Expr, name: &str) -> Result<i64> {
    let bad = || {
        err(format!(
            "{name}(…): expected an interval like INTERVAL '10' SECOND, not {e}"
        ))
    };
    let Expr::Interval(interval) = e else {
        return Err(bad());
    };
    let text = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.clone(),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    // `'10' SECOND`, or `'10 seconds'`, `'1 minute 30 seconds'`: number and unit pairs.
    let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    match (&interval.leading_field, words.len()) {
        (Some(field), 1) => words.push(field.to_string()),
        (None, n) if n >= 2 && n % 2 == 0 => {}
        _ => return Err(bad()),
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let n: i64 = pair[0].parse().ok().filter(|n| *n >= 0).ok_or_else(bad)?;
        total = crate::units::duration_millis(n, &pair[1], true)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_read_out_of_group_by() {
        let w = parse(r#"SELECT window_start, max(price) FROM bid GROUP BY tumble("dateTime", INTERVAL '10' SECOND)"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (w.window.kind, w.window.size_ms),
            (WindowKind::Tumbling, 10_000)
        );
        assert_eq!(w.time_field, Some(Value::String("$dateTime".into())));
        assert_eq!(
            w.inner,
            "SELECT window_start, max(price) FROM bid GROUP BY window_start, window_end"
        );
        let w = parse("select auction from bid group by HOP(ts, interval '2' seconds, interval '10 seconds', allowed_lateness => INTERVAL '1' MINUTE), auction")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                w.window.kind,
                w.window.size_ms,
                w.window.allowed_lateness_ms
            ),
            (WindowKind::Hopping { hop_ms: 2_000 }, 10_000, 60_000)
        );
        let w = parse("SELECT count(*) FROM t GROUP BY session(PROCTIME(), INTERVAL '30' SECOND, idle_timeout => INTERVAL '5' SECOND), t.account, region, doc.a")
            .unwrap()
            .unwrap();
        assert_eq!(w.window.kind, WindowKind::Session { gap_ms: 30_000 });
        assert_eq!(
            (w.window.boundary, w.window.idle_timeout_ms, w.time_field),
            (Boundary::ProcessingTime, Some(5_000), None)
        );
        assert_eq!(
            w.window.partition_by,
            Some(json!({"k1": "$account", "k2": "$region", "k3": "$doc.a"}))
        );
        assert!(w.per_row_group);
        let w = parse("SELECT count(*) FROM \"Bid\" AS b GROUP BY session(b.\"dateTime\", INTERVAL '1 minute 30 seconds'), b.Bidder ORDER BY 1 LIMIT 1")
            .unwrap()
            .unwrap();
        assert_eq!(w.window.size_ms, 90_000);
        assert_eq!(w.time_field, Some(json!("$dateTime")));
        assert_eq!(w.window.partition_by, Some(json!({"k1": "$bidder"})));
        assert!(!w.per_row_group, "LIMIT reaches across sessions");
        assert!(parse("SELECT * FROM bid").unwrap().is_none());
        for (sql, says) in [
            (
                "SELECT 1 FROM bid GROUP BY tumble(ts)",
                "tumble takes a time and one interval",
            ),
            (
                "SELECT tumble(ts, INTERVAL '1' SECOND) FROM bid",
                "goes in the GROUP BY",
            ),
            (
                "SELECT 1 FROM bid GROUP BY tumble(ts, INTERVAL '1' MONTH)",
                "expected an interval",
            ),
            (
                "SELECT 1 FROM bid GROUP BY tumble(ts, INTERVAL '5 m')",
                "expected an interval",
            ),
            (
                "SELECT 1 FROM bid GROUP BY tumble(ts, INTERVAL '1' SECOND, allowed_lateness => INTERVAL '-2' SECOND)",
                "expected an interval",
            ),
            (
                "SELECT 1 FROM bid GROUP BY tumble(ts, INTERVAL '99999999999999999' DAY)",
                "expected an interval",
            ),
            (
                "SELECT 1 FROM bid GROUP BY tumble(ts, INTERVAL '1' SECOND, lateness => INTERVAL '1' SECOND)",
                "unknown option lateness",
            ),
            (
                "SELECT 1 FROM bid GROUP BY session(ts, INTERVAL '1' SECOND), upper(k)",
                "must be columns",
            ),
        ] {
            let e = parse(sql).unwrap_err().to_string();
            assert!(e.contains(says), "{sql}: {e}");
        }
    }
}
