//! A stream scaled out over its source's partitions (`runtime.scaleOut`): a coordinator — a
//! Kafka consumer group — hands partitions to this process and takes them away, and each
//! partition held runs as a task: the micro-batch loop over that partition alone, with its
//! own sink, dead letters and checkpoint store. A task's state is its partition's only, so a
//! partition can move to another process with its position and state, and the identities of
//! its output (`BatchId`, named after the task) stay the same wherever it runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::micro_batch::{RunStats, run_with_dead_letters};
use super::options::RuntimeOptions;
use crate::connect::source::{PartitionChange, PartitionedSource, Sink, Source};
use crate::runtime::query::StreamQuery;
use crate::runtime::state::checkpoint::CheckpointStore;
use crate::{Engine, Error, Result};

/// What a task writes to and checkpoints in.
pub struct TaskParts {
    pub sink: Box<dyn Sink>,
    pub dead_letter: Option<Box<dyn Sink>>,
    pub checkpoints: Box<dyn CheckpointStore>,
}

/// Opens a task's parts, given its id.
pub type OpenTask = Arc<dyn Fn(&str) -> Result<TaskParts> + Send + Sync>;

/// How often the loop looks for tasks that ended while nothing changed.
const REAP_EVERY: Duration = Duration::from_millis(100);

/// A running task.
struct Task {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Result<RunStats>>,
}

/// Runs `query` as one task per partition `source` hands this process, until `options.stop`
/// is set (every task then checkpoints and stops), the source closes, or — for a bounded
/// source — every task of the last assignment has ended and nothing more has been handed
/// over for the source's linger time (the partitions of a member that died come to the
/// members still there). The counts are the tasks' together; a task that
/// fails stops the others and the run returns its error.
pub async fn run_tasks(
    query: StreamQuery,
    mut source: Box<dyn PartitionedSource>,
    open: OpenTask,
    options: &RuntimeOptions,
) -> Result<RunStats> {
    let mut tasks: HashMap<String, Task> = HashMap::new();
    let mut total = RunStats::default();
    // Between a revocation and the assignment that follows it, the process holds nothing
    // for a moment: it is done only once an assignment has settled and its tasks ended.
    let mut settled = false;
    // Since when this process has held no running task (for a bounded source).
    let mut idle_since: Option<std::time::Instant> = None;
    let outcome: Result<()> = loop {
        if let Err(e) = reap(&mut tasks, &mut total).await {
            break Err(e);
        }
        if settled && tasks.is_empty() {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            if source.bounded() && since.elapsed() >= source.linger() {
                break Ok(());
            }
        } else {
            idle_since = None;
        }
        if options.stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let change = tokio::select! {
            change = source.next_change() => change,
            _ = tokio::time::sleep(REAP_EVERY) => continue,
        };
        match change {
            Err(e) => break Err(e),
            Ok(None) => break Ok(()),
            Ok(Some(PartitionChange::Assigned(list))) => {
                settled = true;
                let mut failed = None;
                for (id, task_source) in list {
                    if tasks.contains_key(&id) {
                        continue;
                    }
                    match spawn(&query, &id, task_source, &open, options) {
                        Ok(t) => {
                            tasks.insert(id, t);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
            }
            Ok(Some(PartitionChange::Revoked(ids, done))) => {
                settled = false;
                let mut stopping = Vec::new();
                for id in &ids {
                    if let Some(t) = tasks.remove(id) {
                        t.stop.store(true, Ordering::SeqCst);
                        stopping.push(t);
                    }
                }
                let mut failed = None;
                for t in stopping {
                    if let Err(e) = finish(t, &mut total).await {
                        failed.get_or_insert(e);
                    }
                }
                // Only now may the partitions move.
                done();
                if let Some(e) = failed {
                    break Err(e);
                }
            }
        }
    };
    for t in tasks.values() {
        t.stop.store(true, Ordering::SeqCst);
    }
    let mut failed = outcome.err();
    for (_, t) in tasks.drain() {
        if let Err(e) = finish(t, &mut total).await {
            failed.get_or_insert(e);
        }
    }
    // Leaving the coordinator (a consumer group) after the tasks have checkpointed.
    drop(source);
    match failed {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Starts the task of partition `id`. It plans in a session of its own: a stream binds its
/// micro-batches to a table of the session, which the tasks must not share.
fn spawn(
    query: &StreamQuery,
    id: &str,
    mut source: Box<dyn Source>,
    open: &OpenTask,
    options: &RuntimeOptions,
) -> Result<Task> {
    let TaskParts {
        mut sink,
        mut dead_letter,
        mut checkpoints,
    } = open(id)?;
    let mut options = options.clone();
    options.pipeline_id = format!("{}/{id}", options.pipeline_id);
    let stop = Arc::new(AtomicBool::new(false));
    options.stop = stop.clone();
    let engine = Engine::new();
    let query = query.clone();
    tracing::info!(task = %options.pipeline_id, "task started");
    let handle = tokio::spawn(async move {
        run_with_dead_letters(
            &engine,
            query,
            source.as_mut(),
            sink.as_mut(),
            dead_letter.as_mut().map(|d| d.as_mut() as &mut dyn Sink),
            checkpoints.as_mut(),
            &options,
        )
        .await
    });
    Ok(Task { stop, handle })
}

/// Waits for `t` to end; adds its counts.
async fn finish(t: Task, total: &mut RunStats) -> Result<()> {
    let stats = t
        .handle
        .await
        .map_err(|e| Error::internal(format!("a task ended abnormally: {e}")))??;
    total.add(&stats);
    Ok(())
}

/// Collects the tasks that have ended by themselves (a bounded partition's end).
async fn reap(tasks: &mut HashMap<String, Task>, total: &mut RunStats) -> Result<()> {
    let ended: Vec<String> = tasks
        .iter()
        .filter(|(_, t)| t.handle.is_finished())
        .map(|(id, _)| id.clone())
        .collect();
    for id in ended {
        let t = tasks.remove(&id).expect("listed above");
        finish(t, total).await?;
        tracing::info!(task = %id, "task reached its end");
    }
    Ok(())
}
