//! How a stream runs ([`RuntimeOptions`]) and the counts its steps share while it runs
//! ([`Counters`]): the one place the loop and its steps (fetch, transform, deliver) meet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::runtime::metrics::MetricsListener;
use crate::runtime::policy::error_policy::ErrorPolicy;

/// How the loop runs.
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Documents per micro-batch (at most).
    pub micro_batch_size: usize,
    /// How long a micro-batch may wait for more documents after its first one (`None`: it
    /// closes as soon as the source has nothing more right now).
    pub max_batch_delay: Option<Duration>,
    /// Micro-batches read ahead of the transform step (the fetch → transform queue).
    pub source_queue_capacity: usize,
    /// Transformed micro-batches waiting for delivery (the transform → deliver queue).
    pub queue_capacity: usize,
    /// Stop after this many micro-batches in this run (a graceful stop: the last one is
    /// committed).
    pub max_batches: Option<u64>,
    /// Set to stop gracefully: the loop finishes the batch in hand, checkpoints, and returns.
    pub stop: Arc<AtomicBool>,
    /// What happens when a step fails, and to records the source cannot read.
    pub error_policy: ErrorPolicy,
    /// Checkpoint at most this often (`None`: after every micro-batch). The last batch of a
    /// run is always checkpointed.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// The stream's id, for metrics and logs.
    pub pipeline_id: String,
    /// Told about every committed micro-batch.
    pub listeners: Vec<Arc<dyn MetricsListener>>,
    /// The source's `timeField` (an expression), for event-time windows.
    pub time_field: Option<Value>,
    /// Processing time (processing-time windows, idle timeouts): the system clock unless a
    /// test or simulation drives its own.
    pub clock: Arc<dyn crate::runtime::window::clock::Clock>,
    /// How often a quiet source's windows are stepped anyway, when the clock alone can close
    /// them (processing time, idle timeouts).
    pub tick_interval: Duration,
    /// When a continuous `$group` merges its micro-batches into its groups and emits their
    /// upserts.
    pub group_upserts: GroupUpserts,
}

/// When a continuous `$group` merges micro-batches into its groups and emits the upserts of
/// the groups they changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupUpserts {
    /// Every micro-batch is merged into the groups and the groups it changed emitted.
    #[default]
    EveryBatch,
    /// Each micro-batch is aggregated on its own as it comes; the aggregates are merged into
    /// the groups — and the changed groups emitted, once each — when a checkpoint is taken
    /// (at most every checkpoint interval, and at the end of the input or of the run), or
    /// when [`HELD_ROWS`] aggregates wait. Without a checkpoint interval that is after every
    /// micro-batch. Sinks that recognise their output after a crash (Kafka, PostgreSQL,
    /// HTTP) need every micro-batch formed again to give the same output, so with them the
    /// merge is always [`GroupUpserts::EveryBatch`].
    AtCheckpoint,
}

/// Aggregates of micro-batches a continuous `$group` holds at most before merging them into
/// its groups (under [`GroupUpserts::AtCheckpoint`]): bounds the memory they take and how long
/// upserts wait when checkpoints are far apart.
pub const HELD_ROWS: usize = 65_536;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            micro_batch_size: 8192,
            max_batch_delay: None,
            source_queue_capacity: 2,
            queue_capacity: 2,
            max_batches: None,
            stop: Arc::new(AtomicBool::new(false)),
            error_policy: ErrorPolicy::fail_fast(),
            checkpoint_interval: None,
            pipeline_id: "stream".to_string(),
            listeners: Vec::new(),
            time_field: None,
            clock: crate::runtime::window::clock::system(),
            tick_interval: Duration::from_millis(100),
            group_upserts: GroupUpserts::default(),
        }
    }
}

/// Counts the steps share while a run goes on.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub retries: AtomicU64,
    pub failures: AtomicU64,
    /// Time spent waiting on a full queue, in nanoseconds.
    pub waited_ns: AtomicU64,
}

impl Counters {
    pub fn add_wait(&self, d: Duration) {
        self.waited_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}
