//! The SQL spelling of stream windows: `GROUP BY tumble(<time column>, INTERVAL '<n>' <unit>)`
//! or `GROUP BY hop(<time column>, INTERVAL '<hop>' <unit>, INTERVAL '<size>' <unit>)`,
//! compiled to the same window operator as `$tumblingWindow` / `$hoppingWindow`: the column is
//! the event time, and the rest of the query runs over each window's rows when the window
//! closes, with the window's bounds as the columns `window_start` and `window_end` (the
//! `tumble(…)` item in `GROUP BY` stands for both).
//!
//! ```sql
//! SELECT window_start, max(price) AS price FROM bid
//! GROUP BY tumble("dateTime", INTERVAL '10' SECOND)
//! ```

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::dsl::Pipeline;
use crate::dsl::stream_window::{StreamWindow, WindowKind};
use crate::{Error, Result};

static INTERVAL: &str = r"INTERVAL\s*'\s*(\d+)\s*'\s*(MILLISECOND|SECOND|MINUTE|HOUR|DAY)S?";

static WINDOW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)\b(tumble|hop)\s*\(\s*("[^"]+"|\w+)\s*,\s*{INTERVAL}\s*(?:,\s*{INTERVAL}\s*)?\)"#
    ))
    .expect("a valid pattern")
});

/// A windowed SQL query, taken apart.
#[derive(Debug, Clone)]
pub struct SqlWindow {
    pub window: StreamWindow,
    /// The event time, as an expression (`"$dateTime"`).
    pub time_field: Value,
    /// The query run over each window's rows (`window_start`, `window_end` in place of the
    /// window function).
    pub inner: String,
}

fn millis(n: &str, unit: &str) -> i64 {
    let n: i64 = n.parse().unwrap_or(0);
    n * match unit.to_ascii_uppercase().as_str() {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        _ => 86_400_000,
    }
}

/// The window of `sql`, if it groups by `tumble(…)` or `hop(…)`.
pub fn parse(sql: &str) -> Result<Option<SqlWindow>> {
    let Some(c) = WINDOW.captures(sql) else {
        if Regex::new(r"(?i)\b(tumble|hop|session)\s*\(")
            .expect("a valid pattern")
            .is_match(sql)
        {
            return Err(Error::config(
                "sql",
                "window functions are spelled tumble(<column>, INTERVAL '<n>' <unit>) or hop(<column>, INTERVAL '<hop>' <unit>, INTERVAL '<size>' <unit>) (session windows are not supported in SQL yet)",
            ));
        }
        return Ok(None);
    };
    let column = c[2].trim_matches('"').to_string();
    let first = millis(&c[3], &c[4]);
    let kind_name = c[1].to_ascii_lowercase();
    let (kind, size) = match (kind_name.as_str(), c.get(5), c.get(6)) {
        ("tumble", None, None) => (WindowKind::Tumbling, first),
        ("hop", Some(n), Some(u)) => {
            let size = millis(n.as_str(), u.as_str());
            if first <= 0 || first > size || size % first != 0 {
                return Err(Error::config(
                    "sql",
                    "hop(…): the hop must be positive, at most the size, and divide it evenly",
                ));
            }
            (WindowKind::Hopping { hop_ms: first }, size)
        }
        _ => {
            return Err(Error::config(
                "sql",
                "tumble takes a column and one interval; hop a column, the hop and the size",
            ));
        }
    };
    if size <= 0 {
        return Err(Error::config("sql", "a window's interval must be positive"));
    }
    let whole = c.get(0).expect("the match");
    let inner = format!(
        "{}window_start, window_end{}",
        &sql[..whole.start()],
        &sql[whole.end()..]
    );
    Ok(Some(SqlWindow {
        window: StreamWindow {
            kind,
            size_ms: size,
            offset_ms: 0,
            allowed_lateness_ms: 0,
            pipeline: Pipeline { stages: Vec::new() },
            partition_by: None,
            boundary: Default::default(),
            idle_timeout_ms: None,
        },
        time_field: Value::String(format!("${column}")),
        inner,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_and_hop_are_read_out_of_group_by() {
        let w = parse(r#"SELECT window_start, max(price) FROM bid GROUP BY tumble("dateTime", INTERVAL '10' SECOND)"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (w.window.kind, w.window.size_ms),
            (WindowKind::Tumbling, 10_000)
        );
        assert_eq!(w.time_field, Value::String("$dateTime".into()));
        assert_eq!(
            w.inner,
            "SELECT window_start, max(price) FROM bid GROUP BY window_start, window_end"
        );
        let w = parse("select auction from bid group by HOP(ts, interval '2' seconds, interval '10' second), auction")
            .unwrap()
            .unwrap();
        assert_eq!(
            (w.window.kind, w.window.size_ms),
            (WindowKind::Hopping { hop_ms: 2_000 }, 10_000)
        );
        assert!(parse("SELECT * FROM bid").unwrap().is_none());
        assert!(parse("SELECT 1 FROM bid GROUP BY tumble(ts)").is_err());
    }
}
