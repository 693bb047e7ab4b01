//! Error policies of a stream (the seed's `StreamingErrorPolicy`): what the runtime does when
//! a source read, the pipeline or a sink fails on a micro-batch, and with records that cannot
//! be read at all.
//!
//! A policy is an optional [`Retry`] (attempts with exponential backoff and jitter) followed by
//! what to do once the attempts are used up ([`OnFailure`]): stop the run (`failFast`), drop
//! the batch and go on (`skip`), or send what failed to the dead-letter sink and go on
//! (`deadLetter`). Unreadable records (malformed JSON, a value that does not fit the schema)
//! cannot get better by retrying, so they go straight to the `OnFailure` part.

use std::time::Duration;

use serde_json::Value;

use crate::{Error, Result};

/// What happens once a failure is final (after any retries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop the run with the error (the default).
    #[default]
    FailFast,
    /// Drop what failed (counted as skipped) and go on.
    Skip,
    /// Write what failed, with the reason and its position, to the dead-letter sink and go on.
    DeadLetter,
}

/// Retries of a failing step: up to `max_attempts` attempts in all, waiting
/// `initial_backoff × 2^(failures − 1)` (at most `max_backoff`) between them, of which a
/// random part (up to half) is taken off so that many streams do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Retry {
    /// `n` attempts in all, backing off from 100 ms up to 10 s.
    pub fn attempts(n: u32) -> Retry {
        Retry {
            max_attempts: n.max(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// The wait before the next attempt after `failures` failed ones, or `None` when the
    /// attempts are used up.
    pub fn backoff(&self, failures: u32) -> Option<Duration> {
        if failures >= self.max_attempts {
            return None;
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(30));
        let full = exp.min(self.max_backoff);
        // "Equal jitter": half fixed, half random.
        let half = full / 2;
        let random = half.mul_f64(rand::random::<f64>());
        Some(half + random)
    }
}

/// A stream's error policy: retries, then what to do.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorPolicy {
    pub retry: Option<Retry>,
    pub on_failure: OnFailure,
}

impl ErrorPolicy {
    /// Stop at the first failure.
    pub fn fail_fast() -> Self {
        ErrorPolicy::default()
    }

    /// Drop failing batches and unreadable records, counting them.
    pub fn skip() -> Self {
        ErrorPolicy::default().then(OnFailure::Skip)
    }

    /// Send failing documents and unreadable records to the dead-letter sink.
    pub fn dead_letter() -> Self {
        ErrorPolicy::default().then(OnFailure::DeadLetter)
    }

    /// Retry a failing step `max_attempts` times in all, then fail (change with `then`).
    pub fn retry(max_attempts: u32) -> Self {
        ErrorPolicy {
            retry: Some(Retry::attempts(max_attempts)),
            on_failure: OnFailure::FailFast,
        }
    }

    /// The backoff of the retries: from `initial`, doubling, up to `max`.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        let r = self.retry.get_or_insert(Retry::attempts(3));
        r.initial_backoff = initial;
        r.max_backoff = max.max(initial);
        self
    }

    /// What happens once the retries (if any) are used up.
    pub fn then(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// What happens to one record the stream cannot take (unreadable, without event time,
    /// late): with a dead-letter sink it goes there, whatever the policy (the policy governs
    /// failing batches, sinks and sources); without one, the policy's final step decides.
    pub fn for_records(&self, dead_letter_sink: bool) -> OnFailure {
        if dead_letter_sink {
            OnFailure::DeadLetter
        } else {
            self.on_failure
        }
    }

    /// The wait before retrying after `failures` failed attempts, if the policy retries.
    pub fn backoff(&self, failures: u32) -> Option<Duration> {
        self.retry.and_then(|r| r.backoff(failures))
    }

    /// Reads a job file's `errorPolicy`: `"failFast"`, `"skip"` (or `"skipAndContinue"`),
    /// `"deadLetter"`, `"retry"` (3 attempts, then fail), or
    /// `{"retry": {"maxAttempts": 5, "initialBackoffMs": 100, "maxBackoffMs": 10000}, "then": "deadLetter"}`
    /// (`"retry": 5` is short for the attempts alone).
    pub fn from_json(v: &Value, at: &str) -> Result<ErrorPolicy> {
        let terminal = |s: &str, at: &str| -> Result<OnFailure> {
            Ok(match s {
                "failFast" => OnFailure::FailFast,
                "skip" | "skipAndContinue" => OnFailure::Skip,
                "deadLetter" => OnFailure::DeadLetter,
                other => {
                    return Err(Error::config(
                        at,
                        format!(
                            "unknown policy \"{other}\" (expected failFast, retry, skip, deadLetter)"
                        ),
                    ));
                }
            })
        };
        match v {
            Value::String(s) if s == "retry" => Ok(ErrorPolicy::retry(3)),
            Value::String(s) => Ok(ErrorPolicy::default().then(terminal(s, at)?)),
            Value::Object(m) => {
                let mut policy = ErrorPolicy::default();
                for (k, v) in m {
                    let here = format!("{at}.{k}");
                    match (k.as_str(), v) {
                        ("then", Value::String(s)) => policy.on_failure = terminal(s, &here)?,
                        ("retry", Value::Number(n)) => {
                            policy.retry = Some(Retry::attempts(attempts(n.as_u64(), &here)?));
                        }
                        ("retry", Value::Object(r)) => {
                            let mut retry = Retry::attempts(3);
                            for (rk, rv) in r {
                                let there = format!("{here}.{rk}");
                                let n = rv.as_u64();
                                match rk.as_str() {
                                    "maxAttempts" => retry.max_attempts = attempts(n, &there)?,
                                    "initialBackoffMs" => {
                                        retry.initial_backoff = millis(n, &there)?
                                    }
                                    "maxBackoffMs" => retry.max_backoff = millis(n, &there)?,
                                    other => {
                                        return Err(Error::config(
                                            there.clone(),
                                            format!(
                                                "unknown retry setting \"{other}\" (expected maxAttempts, initialBackoffMs, maxBackoffMs)"
                                            ),
                                        ));
                                    }
                                }
                            }
                            retry.max_backoff = retry.max_backoff.max(retry.initial_backoff);
                            policy.retry = Some(retry);
                        }
                        ("then" | "retry", _) => {
                            return Err(Error::config(
                                here,
                                "expected a policy name (then) or retry settings (retry)",
                            ));
                        }
                        (other, _) => {
                            return Err(Error::config(
                                here,
                                format!("unknown field \"{other}\" (expected retry, then)"),
                            ));
                        }
                    }
                }
                Ok(policy)
            }
            _ => Err(Error::config(
                at,
                "expected a policy name or {\"retry\": …, \"then\": …}",
            )),
        }
    }
}

/// Evaluates `$attempt` (an expression ending in `.await`, giving a `Result`) until it
/// succeeds, fails in a way that retrying cannot mend ([`Error::is_transient`]), or
/// `$policy`'s retries are used up, waiting the backoff between attempts and
/// counting each retry in `$retries` (an `AtomicU64`); gives the last error when they are used
/// up (what happens then is the caller's part of the policy). A macro, not a function taking
/// a closure, because the attempts borrow the caller's state mutably.
macro_rules! with_retries {
    ($policy:expr, $what:expr, $retries:expr, $attempt:expr) => {{
        let mut failures = 0u32;
        loop {
            match $attempt {
                Ok(v) => break Ok(v),
                // Deterministic failures (a user error, overflow, a bug) would fail again.
                Err(e) if !e.is_transient() => break Err(e),
                Err(e) => {
                    failures += 1;
                    match $policy.backoff(failures) {
                        Some(wait) => {
                            $retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(error = %e, attempt = failures, "{} failed; retrying in {wait:?}", $what);
                            tokio::time::sleep(wait).await;
                        }
                        None => break Err(e),
                    }
                }
            }
        }
    }};
}
pub(crate) use with_retries;

fn attempts(n: Option<u64>, at: &str) -> Result<u32> {
    match n {
        Some(n @ 1..=1000) => Ok(n as u32),
        _ => Err(Error::config(
            at,
            "expected a number of attempts from 1 to 1000",
        )),
    }
}

fn millis(n: Option<u64>, at: &str) -> Result<Duration> {
    n.map(Duration::from_millis)
        .ok_or_else(|| Error::config(at, "expected milliseconds (a whole number)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_and_ends() {
        let r = Retry {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for (failures, full) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
            for _ in 0..20 {
                let d = r.backoff(failures).unwrap().as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "{failures}: {d}");
            }
        }
        assert_eq!(r.backoff(5), None, "five attempts, five failures: done");
    }

    #[test]
    fn job_files_spell_policies_as_names_or_combinations() {
        assert_eq!(
            ErrorPolicy::from_json(&json!("skipAndContinue"), "e").unwrap(),
            ErrorPolicy::skip()
        );
        let p = ErrorPolicy::from_json(
            &json!({"retry": {"maxAttempts": 4, "initialBackoffMs": 10, "maxBackoffMs": 40}, "then": "deadLetter"}),
            "e",
        )
        .unwrap();
        assert_eq!(
            p,
            ErrorPolicy::retry(4)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
                .then(OnFailure::DeadLetter)
        );
        let e = ErrorPolicy::from_json(&json!({"retry": {"maxAttempts": 0}}), "errorPolicy")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "errorPolicy.retry.maxAttempts: expected a number of attempts from 1 to 1000"
        );
        let e = ErrorPolicy::from_json(&json!("deadletter"), "errorPolicy").unwrap_err();
        assert!(
            e.to_string().contains("unknown policy \"deadletter\""),
            "{e}"
        );
    }
}
