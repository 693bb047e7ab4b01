//! Deliver: the last step of the loop. Writes a micro-batch's output (and its dead letters)
//! and commits both sinks, so the checkpoint that follows names durable output.
//!
//! A failing write or commit is retried by the error policy, each attempt starting from the
//! sinks' last committed state (`restore`), so a retried batch is not written twice. When the
//! retries are used up the run fails (`failFast`), the batch's output is dropped (`skip`), or
//! it goes to the dead-letter sink (`deadLetter`, stage `sink`).

use std::sync::atomic::Ordering;

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use crate::connect::source::{BatchId, Sink};
use crate::runtime::exec::options::Counters;
use crate::runtime::exec::transform::Transformed;
use crate::runtime::policy::dead_letters::{DeadLetter, rows_as_json, to_batch};
use crate::runtime::policy::error_policy::{ErrorPolicy, OnFailure, with_retries};
use crate::{Error, Result};

/// The sinks and what they last committed.
pub(super) struct Deliverer<'a, 'b> {
    pub sink: &'a mut dyn Sink,
    pub dead_letter: Option<&'b mut dyn Sink>,
    /// The main sink's and the dead-letter sink's states at their last commit.
    pub committed: (Value, Value),
    pub policy: ErrorPolicy,
    /// The job's name, for batch identities.
    pub job: String,
}

/// What delivering one batch did.
pub(super) struct Delivered {
    pub output_rows: u64,
    /// Output documents the sink refused (dropped or dead-lettered by the policy).
    pub undelivered: u64,
}

impl Deliverer<'_, '_> {
    /// The sinks' state as a checkpoint holds it.
    pub fn state(&self) -> Value {
        match self.dead_letter {
            Some(_) => json!({"out": self.committed.0, "deadLetter": self.committed.1}),
            None => self.committed.0.clone(),
        }
    }

    /// Writes and commits `t`; afterwards [`Deliverer::state`] is the state to checkpoint.
    pub async fn deliver(
        &mut self,
        t: &Transformed,
        number: u64,
        counters: &Counters,
    ) -> Result<Delivered> {
        let rows: u64 = t.output.iter().map(|b| b.num_rows() as u64).sum();
        let batch = BatchId {
            job: self.job.clone(),
            number,
        };
        let tried: Result<()> = with_retries!(
            self.policy,
            "delivery",
            counters.retries,
            self.attempt(&batch, &t.output, &t.dead_letters).await
        );
        let Err(error) = tried else {
            return Ok(Delivered {
                output_rows: rows,
                undelivered: 0,
            });
        };
        counters.failures.fetch_add(1, Ordering::Relaxed);
        match self.policy.on_failure {
            OnFailure::FailFast => Err(error),
            OnFailure::Skip => {
                tracing::warn!(error = %error, documents = rows, "output of a micro-batch dropped");
                Ok(Delivered {
                    output_rows: 0,
                    undelivered: rows,
                })
            }
            OnFailure::DeadLetter => {
                let reason = error
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let position = json!({"from": t.start.0, "to": t.position.0});
                let mut letters = t.dead_letters.clone();
                for b in &t.output {
                    for raw in rows_as_json(b)? {
                        letters.push(DeadLetter {
                            reason: reason.clone(),
                            stage: "sink",
                            position: position.clone(),
                            raw,
                        });
                    }
                }
                let Some(dead) = self.dead_letter.as_deref_mut() else {
                    return Err(Error::config(
                        "stream",
                        "errorPolicy \"deadLetter\" needs a deadLetter sink",
                    ));
                };
                dead.write(&[to_batch(&letters)?]).await?;
                self.committed.1 = dead.commit().await?;
                Ok(Delivered {
                    output_rows: 0,
                    undelivered: rows,
                })
            }
        }
    }

    /// Writes and commits; after a failure, the sinks are back at their last commit.
    /// One try at writing and committing a batch. Every try begins the batch anew, so a sink
    /// that names its records by batch and place gives a retried batch's records the names
    /// they had (and recognises those a failed try wrote).
    async fn attempt(
        &mut self,
        batch: &BatchId,
        output: &[RecordBatch],
        letters: &[DeadLetter],
    ) -> Result<()> {
        self.sink.begin(batch);
        let tried = self.write_and_commit(output, letters).await;
        if tried.is_err() {
            self.restore().await?;
            self.sink.recover(&self.committed.0).await?;
        }
        tried
    }

    async fn write_and_commit(
        &mut self,
        output: &[RecordBatch],
        letters: &[DeadLetter],
    ) -> Result<()> {
        if let Some(dead) = self.dead_letter.as_deref_mut()
            && !letters.is_empty()
        {
            dead.write(&[to_batch(letters)?]).await?;
        }
        self.sink.write(output).await?;
        let main = self.sink.commit().await?;
        let dead = match self.dead_letter.as_deref_mut() {
            Some(d) => d.commit().await?,
            None => Value::Null,
        };
        self.committed = (main, dead);
        Ok(())
    }

    /// Makes what both sinks committed durable, before a checkpoint names it.
    pub async fn sync(&mut self) -> Result<()> {
        self.sink.sync().await?;
        if let Some(d) = self.dead_letter.as_deref_mut() {
            d.sync().await?;
        }
        Ok(())
    }

    /// After [`Deliverer::restore`] at the start of a run whose last run crashed after
    /// writing output its checkpoint does not cover: the main sink learns what it holds.
    pub async fn recover(&mut self) -> Result<()> {
        self.sink.recover(&self.committed.0).await
    }

    /// Back to the last committed state (what a failed attempt wrote is discarded).
    pub async fn restore(&mut self) -> Result<()> {
        self.sink.restore(&self.committed.0).await?;
        if let Some(d) = self.dead_letter.as_deref_mut() {
            d.restore(&self.committed.1).await?;
        }
        Ok(())
    }
}
