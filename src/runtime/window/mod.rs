//! Windows over a stream: fixed windows (tumbling, hopping; [`fixed`]) and sessions
//! ([`session`]) behind one operator ([`WindowOperator`]), the watermarks that close them
//! ([`watermark`]), the clock of processing time ([`clock`]), what both operators share
//! ([`shared`]) and the SQL spelling (`GROUP BY tumble(…)`, [`sql`]).

pub mod clock;
pub mod fixed;
pub mod session;
pub mod shared;
pub mod sql;
pub mod watermark;

use serde_json::Value;

use crate::dsl::stream_window::Boundary;
use crate::dsl::{Pipeline, StageKind};
use crate::runtime::metrics::StageMetrics;
use crate::runtime::state::keyed::Snapshot;
use crate::{Engine, Result};

pub use fixed::ContinuousWindow;
pub use session::SessionWindows;
pub use shared::WindowOutput;
use shared::event_time;

/// What a window operator does, fixed windows and sessions alike: take a micro-batch in and
/// emit the windows the watermark closed, and keep its state in checkpoints.
#[async_trait::async_trait]
pub trait Windowing: Send {
    /// What kind of window it is (`tumbling window`, …), as a checkpoint records it.
    fn kind(&self) -> &'static str;
    /// Takes the micro-batch registered as `table` in; emits the windows the watermark has
    /// passed (all of them when `end_of_input`); `now` is the processing time. All or
    /// nothing: a failed step leaves the state as it was.
    async fn step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        now: i64,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput>;
    /// The watermarks.
    fn marks(&self) -> &watermark::Watermarks;
    /// The state, for a checkpoint.
    fn state(&self) -> Result<Snapshot>;
    /// Back to a checkpoint's state.
    fn restore(&mut self, bytes: &[u8]) -> Result<()>;
}

/// A stream's window operator: fixed windows (tumbling, hopping) or sessions, both
/// [`Windowing`].
pub enum WindowOperator {
    Fixed(ContinuousWindow),
    Session(SessionWindows),
}

impl WindowOperator {
    /// The windowed form of `pipeline` when it has a window stage (`None` without one).
    /// `time_field` is the source's `timeField` expression.
    pub fn plan(pipeline: &Pipeline, time_field: Option<&Value>) -> Result<Option<WindowOperator>> {
        let Some((i, window)) =
            pipeline
                .stages
                .iter()
                .enumerate()
                .find_map(|(i, s)| match &s.kind {
                    StageKind::StreamWindow(w) => Some((i, w)),
                    _ => None,
                })
        else {
            return Ok(None);
        };
        let stage = &pipeline.stages[i];
        let processing = window.boundary == Boundary::ProcessingTime;
        let time_field = match time_field {
            Some(t) => Some(t),
            None if processing => None,
            None => {
                return Err(stage.path.err(
                    "an eventTime window needs the source's timeField (\"source\": {…, \"timeField\": \"$ts\"})",
                ));
            }
        };
        let before = Pipeline {
            stages: pipeline.stages[..i].to_vec(),
        };
        crate::runtime::query::check_stages(&before)?;
        let after = Pipeline {
            stages: pipeline.stages[i + 1..].to_vec(),
        };
        crate::runtime::query::check_stages(&after)?;
        if window
            .pipeline
            .stages
            .iter()
            .any(|s| matches!(s.kind, StageKind::StreamWindow(_)))
        {
            return Err(stage
                .path
                .err("a window's pipeline cannot hold another window"));
        }
        // The event time of the document as the source gave it; it rides through the stages.
        let mut stages = event_time(if processing { None } else { time_field })?;
        stages.extend(before.stages);
        if let crate::dsl::stream_window::WindowKind::Session { .. } = window.kind {
            return Ok(Some(WindowOperator::Session(SessionWindows::new(
                window,
                stages,
                after.stages,
            )?)));
        }
        Ok(Some(WindowOperator::Fixed(ContinuousWindow::new(
            window,
            stages,
            after.stages,
        )?)))
    }

    /// The window operator of a windowed SQL query over `table`.
    pub fn plan_sql(
        w: &crate::runtime::window::sql::SqlWindow,
        table: &str,
    ) -> Result<WindowOperator> {
        let before = event_time(w.time_field.as_ref())?;
        if let crate::dsl::stream_window::WindowKind::Session { .. } = w.window.kind {
            let mut s = SessionWindows::new(&w.window, before, Vec::new())?;
            s.inner_sql = Some((w.inner.clone(), table.to_string()));
            // Plain partition columns let closed sessions run as one query, when the query
            // works group by group.
            s.sql_keys = match &w.window.partition_by {
                _ if !w.per_row_group => None,
                None => Some(Vec::new()),
                Some(Value::Object(keys)) => keys
                    .values()
                    .map(|k| {
                        k.as_str()
                            .and_then(|k| k.strip_prefix('$'))
                            .filter(|k| !k.contains('.'))
                            .map(str::to_string)
                    })
                    .collect(),
                Some(_) => None,
            };
            return Ok(WindowOperator::Session(s));
        }
        Ok(WindowOperator::Fixed(ContinuousWindow::new_sql(
            &w.window,
            before,
            w.inner.clone(),
            table.to_string(),
        )))
    }

    /// The operator behind the one interface both kinds implement.
    fn windows(&self) -> &dyn Windowing {
        match self {
            WindowOperator::Fixed(w) => w,
            WindowOperator::Session(s) => s,
        }
    }

    fn windows_mut(&mut self) -> &mut dyn Windowing {
        match self {
            WindowOperator::Fixed(w) => w,
            WindowOperator::Session(s) => s,
        }
    }

    /// What kind of window it is, as a checkpoint records it.
    pub fn kind(&self) -> &'static str {
        self.windows().kind()
    }

    /// Takes the micro-batch registered as `table` in; emits the windows the watermark has
    /// passed (all of them when `end_of_input`). `now` is the processing time.
    pub async fn step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        now: i64,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        self.windows_mut()
            .step(engine, table, batch_rows, end_of_input, now, stages)
            .await
    }

    /// Whether the clock alone can close windows (processing time, or an idle timeout), so
    /// the loop should step it while the source is quiet.
    pub fn needs_ticks(&self) -> bool {
        let marks = self.windows().marks();
        marks.processing() || marks.idle_timeout().is_some()
    }

    /// Whether late documents are dropped rather than dead-lettered.
    pub fn drops_late(&self) -> bool {
        self.windows().marks().drops_late()
    }

    /// Whether windows follow the clock rather than event time (no replay then).
    pub fn processing_time(&self) -> bool {
        self.windows().marks().processing()
    }

    /// The state, for a checkpoint.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.windows().state()
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.windows_mut().restore(bytes)
    }
}
