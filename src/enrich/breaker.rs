//! A circuit breaker for an enrich call site: when too many calls fail, it stops calling for
//! a while (answers fail at once, and `onError` decides), then lets a few trial calls through
//! and closes again if they succeed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dsl::enrich::CircuitBreakerOptions;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Calling; counting outcomes in the current window.
    Closed,
    /// Not calling until the instant.
    Open(Instant),
    /// Letting `trials` calls through; any failure opens again.
    HalfOpen { trials: u32, passed: u32 },
}

#[derive(Debug)]
struct Counts {
    state: State,
    window_start: Instant,
    calls: u32,
    failures: u32,
}

/// The breaker of one call site.
#[derive(Debug)]
pub struct Breaker {
    failure_rate: f64,
    minimum_calls: u32,
    window: Duration,
    open_for: Duration,
    half_open_calls: u32,
    counts: Mutex<Counts>,
}

impl Breaker {
    pub fn new(o: &CircuitBreakerOptions) -> Breaker {
        Breaker {
            failure_rate: o.failure_rate.unwrap_or(0.5).clamp(0.0, 1.0),
            minimum_calls: o.minimum_calls.unwrap_or(10).max(1),
            window: Duration::from_millis(o.window_ms.unwrap_or(10_000)),
            open_for: Duration::from_millis(o.open_ms.unwrap_or(5_000)),
            half_open_calls: o.half_open_calls.unwrap_or(1).max(1),
            counts: Mutex::new(Counts {
                state: State::Closed,
                window_start: Instant::now(),
                calls: 0,
                failures: 0,
            }),
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&self, now: Instant) -> bool {
        let mut c = self.counts.lock().expect("not poisoned");
        match c.state {
            State::Closed => true,
            State::Open(until) if now < until => false,
            State::Open(_) => {
                c.state = State::HalfOpen {
                    trials: 1,
                    passed: 0,
                };
                true
            }
            State::HalfOpen { trials, passed } if trials < self.half_open_calls => {
                c.state = State::HalfOpen {
                    trials: trials + 1,
                    passed,
                };
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    /// Records a call's outcome (after its retries).
    pub fn record(&self, ok: bool, now: Instant) {
        let mut c = self.counts.lock().expect("not poisoned");
        match c.state {
            State::HalfOpen { trials, passed } => {
                if !ok {
                    c.state = State::Open(now + self.open_for);
                } else if passed + 1 >= self.half_open_calls {
                    *c = Counts {
                        state: State::Closed,
                        window_start: now,
                        calls: 0,
                        failures: 0,
                    };
                } else {
                    c.state = State::HalfOpen {
                        trials,
                        passed: passed + 1,
                    };
                }
            }
            State::Open(_) => {}
            State::Closed => {
                if now.duration_since(c.window_start) >= self.window {
                    c.window_start = now;
                    c.calls = 0;
                    c.failures = 0;
                }
                c.calls += 1;
                c.failures += u32::from(!ok);
                if c.calls >= self.minimum_calls
                    && f64::from(c.failures) / f64::from(c.calls) >= self.failure_rate
                {
                    c.state = State::Open(now + self.open_for);
                }
            }
        }
    }

    /// True while the breaker is open (for errors and tests).
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(self.counts.lock().expect("not poisoned").state, State::Open(until) if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(&CircuitBreakerOptions {
            failure_rate: Some(0.5),
            minimum_calls: Some(4),
            window_ms: Some(1_000),
            open_ms: Some(100),
            half_open_calls: Some(2),
        })
    }

    #[test]
    fn opens_on_a_failure_rate_then_half_opens_and_closes() {
        let b = breaker();
        let t = Instant::now();
        // Three calls are too few to judge, however they went.
        for _ in 0..3 {
            assert!(b.allow(t));
            b.record(false, t);
        }
        assert!(!b.is_open(t));
        b.record(true, t);
        // 3 failures of 4: open.
        assert!(b.is_open(t));
        assert!(!b.allow(t + Duration::from_millis(50)));
        // After the open wait, two trial calls go through, a third waits.
        let later = t + Duration::from_millis(150);
        assert!(b.allow(later));
        assert!(b.allow(later));
        assert!(!b.allow(later));
        b.record(true, later);
        b.record(true, later);
        assert!(b.allow(later), "closed again after the trials passed");
    }

    #[test]
    fn a_failed_trial_opens_again_and_old_windows_are_forgotten() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            b.record(false, t);
        }
        let later = t + Duration::from_millis(150);
        assert!(b.allow(later));
        b.record(false, later);
        assert!(b.is_open(later));
        // In a closed breaker, failures of an earlier window do not count.
        let c = breaker();
        for _ in 0..3 {
            c.record(false, t);
        }
        let next = t + Duration::from_millis(1_500);
        for _ in 0..3 {
            c.record(true, next);
        }
        c.record(false, next);
        assert!(!c.is_open(next), "1 failure of 4 in this window");
    }
}
