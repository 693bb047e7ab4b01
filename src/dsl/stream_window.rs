//! Stream window stages, in the shape of MongoDB Atlas Stream Processing: `$tumblingWindow`
//! and `$hoppingWindow` with `interval: {size, unit}` (`hopSize` for hopping windows),
//! `boundary: "eventTime" | "processingTime"`, an inner `pipeline` run over each window's
//! documents, `allowedLateness`, `idleTimeout` and `offset` (all `{size, unit}`);
//! `$sessionWindow` with `gap` and `partitionBy`.
//!
//! ```json
//! {"$tumblingWindow": {"interval": {"size": 1, "unit": "minute"},
//!                      "pipeline": [{"$group": {"_id": "$customerId", "n": {"$sum": 1}}}]}}
//! ```

use serde_json::Value;

use super::Pipeline;
use super::path::JsonPath;
use crate::Result;

/// Which windows a document falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// One window per `size`, back to back.
    Tumbling,
    /// Windows of `size` starting every `hop` milliseconds (they overlap when hop < size).
    Hopping { hop_ms: i64 },
    /// Sessions: documents (per `partitionBy` value) less than `gap` apart.
    Session { gap_ms: i64 },
}

/// Which clock places documents in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// The source's `timeField` (the default).
    #[default]
    EventTime,
    /// The stream's clock when a document is processed.
    ProcessingTime,
}

/// A parsed `$tumblingWindow` / `$hoppingWindow` / `$sessionWindow`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamWindow {
    pub kind: WindowKind,
    pub size_ms: i64,
    pub offset_ms: i64,
    pub allowed_lateness_ms: i64,
    /// The stages run over each window's documents.
    pub pipeline: Pipeline,
    /// `partitionBy` of a session window (an expression), if any.
    pub partition_by: Option<Value>,
    pub boundary: Boundary,
    /// How long a source partition may deliver nothing before it stops holding the watermark
    /// back (`runtime::window::watermark`).
    pub idle_timeout_ms: Option<i64>,
    /// `lateData: "drop"`: late documents are counted and dropped, not dead-lettered.
    pub drop_late: bool,
}

impl StreamWindow {
    /// Parses the operand of `name` (`$tumblingWindow` or `$hoppingWindow`) at `at`.
    pub fn parse(name: &str, v: &Value, at: &JsonPath) -> Result<StreamWindow> {
        let Value::Object(map) = v else {
            return Err(at.err(format!(
                "{name} expects an object {{interval, pipeline, …}}"
            )));
        };
        let mut size = None;
        let mut hop = None;
        let mut offset = 0;
        let mut lateness = 0;
        let mut pipeline = None;
        let mut partition_by = None;
        let mut boundary = Boundary::EventTime;
        let mut idle_timeout_ms = None;
        let mut drop_late = false;
        for (k, v) in map {
            let here = at.key(k);
            match k.as_str() {
                "interval" if name != "$sessionWindow" => size = Some(duration(v, &here)?),
                "gap" if name == "$sessionWindow" => size = Some(duration(v, &here)?),
                "partitionBy" if name == "$sessionWindow" => partition_by = Some(v.clone()),
                "hopSize" if name == "$hoppingWindow" => hop = Some(duration(v, &here)?),
                "offset" => offset = duration(v, &here)?,
                "allowedLateness" => lateness = duration(v, &here)?,
                "pipeline" => pipeline = Some(Pipeline::parse_at(v, &here)?),
                "boundary" => {
                    boundary = match v.as_str() {
                        Some("eventTime") => Boundary::EventTime,
                        Some("processingTime") => Boundary::ProcessingTime,
                        _ => {
                            return Err(here.err("expected \"eventTime\" or \"processingTime\""));
                        }
                    }
                }
                "lateData" => {
                    drop_late = match v.as_str() {
                        Some("drop") => true,
                        Some("deadLetter") => false,
                        _ => return Err(here.err("expected \"deadLetter\" or \"drop\"")),
                    }
                }
                "idleTimeout" => {
                    let ms = duration(v, &here)?;
                    if ms == 0 {
                        return Err(here.err("the idleTimeout must be positive"));
                    }
                    idle_timeout_ms = Some(ms);
                }
                other => {
                    let known = if name == "$hoppingWindow" {
                        "interval, hopSize, pipeline, boundary, offset, allowedLateness, idleTimeout, lateData"
                    } else if name == "$sessionWindow" {
                        "gap, partitionBy, pipeline, boundary, allowedLateness, idleTimeout, lateData"
                    } else {
                        "interval, pipeline, boundary, offset, allowedLateness, idleTimeout, lateData"
                    };
                    return Err(here.err(format!("unknown option \"{other}\" (expected {known})")));
                }
            }
        }
        let what = if name == "$sessionWindow" {
            "gap"
        } else {
            "interval"
        };
        let size_ms = size.ok_or_else(|| at.err(format!("{name} needs a {what}")))?;
        if size_ms <= 0 {
            return Err(at.key(what).err(format!("the {what} must be positive")));
        }
        let kind = if name == "$sessionWindow" {
            WindowKind::Session { gap_ms: size_ms }
        } else if name == "$hoppingWindow" {
            let hop_ms = hop.ok_or_else(|| at.err("$hoppingWindow needs a hopSize"))?;
            if hop_ms <= 0 || hop_ms > size_ms || size_ms % hop_ms != 0 {
                return Err(at
                    .key("hopSize")
                    .err("hopSize must be positive, at most the interval, and divide it evenly"));
            }
            WindowKind::Hopping { hop_ms }
        } else {
            WindowKind::Tumbling
        };
        Ok(StreamWindow {
            kind,
            size_ms,
            offset_ms: offset,
            allowed_lateness_ms: lateness,
            pipeline: pipeline.ok_or_else(|| at.err(format!("{name} needs a pipeline")))?,
            partition_by,
            boundary,
            idle_timeout_ms,
            drop_late,
        })
    }

    /// Milliseconds between window starts.
    pub fn hop_ms(&self) -> i64 {
        match self.kind {
            WindowKind::Tumbling | WindowKind::Session { .. } => self.size_ms,
            WindowKind::Hopping { hop_ms } => hop_ms,
        }
    }

    /// The starts of the windows holding event time `t` (milliseconds), earliest first.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + '_ {
        let hop = self.hop_ms();
        // Saturating: an event time near the ends of i64 must not overflow.
        let last = t
            .saturating_sub(self.offset_ms)
            .div_euclid(hop)
            .saturating_mul(hop)
            .saturating_add(self.offset_ms);
        let count = self.size_ms / hop;
        (0..count)
            .rev()
            .map(move |k| last.saturating_sub(k.saturating_mul(hop)))
    }
}

/// `{size, unit}` in milliseconds.
fn duration(v: &Value, at: &JsonPath) -> Result<i64> {
    let size = v.get("size").and_then(Value::as_i64);
    let Some(unit) = v.get("unit").and_then(Value::as_str) else {
        return Err(at.err(UNITS));
    };
    if crate::units::duration_millis(1, unit, false).is_none() {
        return Err(at.err(UNITS));
    }
    match size {
        Some(n) if n >= 0 => crate::units::duration_millis(n, unit, false).ok_or_else(|| {
            at.key("size")
                .err(format!("{n} {unit}s is longer than Fluxion's dates reach"))
        }),
        _ => Err(at.key("size").err("expected a whole number, at least 0")),
    }
}

const UNITS: &str =
    "expected {size, unit} with unit ms, millisecond, second, minute, hour, day or week";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_hold_the_times_they_cover() {
        let w = StreamWindow::parse(
            "$hoppingWindow",
            &json!({"interval": {"size": 10, "unit": "second"}, "hopSize": {"size": 5, "unit": "second"},
                    "pipeline": []}),
            &JsonPath::root(),
        )
        .unwrap();
        assert_eq!(w.starts(12_000).collect::<Vec<_>>(), [5_000, 10_000]);
        assert_eq!(w.starts(-1).collect::<Vec<_>>(), [-10_000, -5_000]);
        let e = StreamWindow::parse(
            "$tumblingWindow",
            &json!({"interval": {"size": 1, "unit": "month"}, "pipeline": []}),
            &JsonPath::root().index(0).key("$tumblingWindow"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline[0].$tumblingWindow.interval: expected {size, unit}"),
            "{e}"
        );
        let e = StreamWindow::parse(
            "$tumblingWindow",
            &json!({"interval": {"size": i64::MAX, "unit": "day"}, "pipeline": []}),
            &JsonPath::root().index(0).key("$tumblingWindow"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("interval.size: "), "{e}");
    }
}
