//! Each bank's share of a server's calls, so that one bank's trouble stays that bank's:
//! - at most `max_in_flight` calls at once and `requests_per_second` started per second (the
//!   bank registry's limits);
//! - a `429` with `Retry-After` pauses every call to that bank until then (1 s without one);
//! - a circuit breaker: after [`FAILURES_TO_OPEN`] failures in a row on the bank's side
//!   (5xx, unreachable, timeouts) the bank is not called for a cool-down ([`FIRST_COOL_DOWN`],
//!   doubling up to [`MAX_COOL_DOWN`]); then one probe call goes through (half-open) — its
//!   success closes the breaker, its failure opens it again. While open, calls fail at once
//!   (`BANK_UNAVAILABLE`, retryable) instead of each waiting out its timeout.
//!
//! Times are tokio's, so tests drive them with a paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::BankError;

/// Failures in a row that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// The first cool-down of an open breaker.
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(5);
/// The longest cool-down.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(60);
/// The pause after a `429` without `Retry-After`; the longest honoured.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// A bank's limits, as registered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BankLimits {
    /// Calls at once.
    pub max_in_flight: u32,
    /// Calls started per second (not finite or not positive: no pacing).
    pub requests_per_second: f64,
}

/// How a bank's gate stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    /// Calls go through.
    Closed,
    /// The bank asked for a pause (`429`): calls wait.
    Paused,
    /// Failing: calls are refused until the cool-down ends.
    Open,
    /// The cool-down ended: one probe call decides.
    HalfOpen,
}

#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    breaker: Breaker,
    cool_down: Duration,
    paused_until: Option<Instant>,
    /// When the next call may start (pacing).
    next_start: Instant,
}

/// One bank's gate.
#[derive(Debug)]
pub struct Gate {
    limits: BankLimits,
    slots: Arc<Semaphore>,
    interval: Option<Duration>,
    inner: Mutex<Inner>,
    /// Calls waiting for a slot.
    waiting: AtomicUsize,
}

/// Leave to call the bank once; give it back with [`Gate::done`].
#[derive(Debug)]
pub struct Pass {
    _slot: OwnedSemaphorePermit,
    probe: bool,
    gate: Arc<Gate>,
    reported: bool,
}

impl Drop for Pass {
    fn drop(&mut self) {
        // A probe dropped unreported (its call cancelled) lets the next call probe.
        if self.probe && !self.reported {
            let mut inner = self.gate.lock();
            if let Breaker::HalfOpen { probing } = &mut inner.breaker {
                *probing = false;
            }
        }
    }
}

/// Whether `error` says the bank itself is failing (what the breaker counts).
fn bank_side(error: &BankError) -> bool {
    matches!(error, BankError::Unavailable | BankError::Timeout)
}

impl Gate {
    /// A gate with `limits`, closed.
    pub fn new(limits: BankLimits) -> Arc<Self> {
        let rate = limits.requests_per_second;
        Arc::new(Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_in_flight.max(1) as usize)),
            interval: (rate.is_finite() && rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            inner: Mutex::new(Inner {
                breaker: Breaker::Closed { failures: 0 },
                cool_down: FIRST_COOL_DOWN,
                paused_until: None,
                next_start: Instant::now(),
            }),
            waiting: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it cannot leave the state half-written: use it as it is.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bank's limits.
    pub fn limits(&self) -> BankLimits {
        self.limits
    }

    /// Waits until a call may go to the bank: a free slot, past any pause, at its pace.
    /// Refused at once (`Unavailable`) while the breaker is open, or half-open with its
    /// probe out.
    pub async fn enter(self: &Arc<Self>) -> Result<Pass, BankError> {
        let probe = self.admit()?;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::clone(&self.slots).acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let slot = slot.map_err(|_| BankError::Internal("the bank's gate closed".to_owned()))?;
        let pass = Pass {
            _slot: slot,
            probe,
            gate: Arc::clone(self),
            reported: false,
        };
        loop {
            let wait = {
                let mut inner = self.lock();
                let now = Instant::now();
                match inner.paused_until {
                    Some(until) if until > now => Some((until, false)),
                    _ => {
                        inner.paused_until = None;
                        self.interval.and_then(|interval| {
                            let start = inner.next_start.max(now);
                            inner.next_start = start + interval;
                            (start > now).then_some((start, true))
                        })
                    }
                }
            };
            match wait {
                None => return Ok(pass),
                Some((until, paced)) => {
                    tokio::time::sleep_until(until).await;
                    if paced {
                        return Ok(pass);
                    }
                }
            }
        }
    }

    /// The breaker's say on one call: `Ok(probe)`, or refused.
    fn admit(&self) -> Result<bool, BankError> {
        let mut inner = self.lock();
        match inner.breaker {
            Breaker::Closed { .. } => Ok(false),
            Breaker::Open { until } if Instant::now() < until => Err(BankError::Unavailable),
            Breaker::Open { .. } | Breaker::HalfOpen { probing: false } => {
                inner.breaker = Breaker::HalfOpen { probing: true };
                Ok(true)
            }
            Breaker::HalfOpen { probing: true } => Err(BankError::Unavailable),
        }
    }

    /// How the call made with `pass` ended: `Ok` or the bank's error.
    pub fn done(&self, mut pass: Pass, outcome: Result<(), &BankError>) {
        pass.reported = true;
        let mut inner = self.lock();
        let now = Instant::now();
        match outcome {
            Err(BankError::RateLimited { retry_after }) => {
                let pause = retry_after
                    .map_or(DEFAULT_PAUSE, Duration::from_secs)
                    .min(MAX_PAUSE);
                let until = now + pause;
                inner.paused_until = Some(inner.paused_until.map_or(until, |p| p.max(until)));
                // The bank answered: it is up.
                if pass.probe {
                    inner.breaker = Breaker::Closed { failures: 0 };
                    inner.cool_down = FIRST_COOL_DOWN;
                }
            }
            Err(e) if bank_side(e) => match inner.breaker {
                Breaker::Closed { failures } if failures + 1 >= FAILURES_TO_OPEN => {
                    inner.breaker = Breaker::Open {
                        until: now + inner.cool_down,
                    };
                }
                Breaker::Closed { failures } => {
                    inner.breaker = Breaker::Closed {
                        failures: failures + 1,
                    };
                }
                Breaker::HalfOpen { .. } if pass.probe => {
                    inner.cool_down = (inner.cool_down * 2).min(MAX_COOL_DOWN);
                    inner.breaker = Breaker::Open {
                        until: now + inner.cool_down,
                    };
                }
                // A call admitted before the breaker opened, ending after: already counted.
                Breaker::HalfOpen { .. } | Breaker::Open { .. } => {}
            },
            _ => {
                if pass.probe || matches!(inner.breaker, Breaker::Closed { .. }) {
                    inner.breaker = Breaker::Closed { failures: 0 };
                    inner.cool_down = FIRST_COOL_DOWN;
                }
            }
        }
    }

    /// Makes `call` (not started yet) through the gate: enters, calls, reports how it ended.
    pub async fn call<T>(
        self: &Arc<Self>,
        call: impl std::future::Future<Output = Result<T, BankError>>,
    ) -> Result<T, BankError> {
        let pass = self.enter().await?;
        let answer = call.await;
        self.done(pass, answer.as_ref().map(|_| ()));
        answer
    }

    /// Where the gate stands now.
    pub fn state(&self) -> GateState {
        let inner = self.lock();
        let now = Instant::now();
        match inner.breaker {
            Breaker::Open { until } if now < until => GateState::Open,
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => GateState::HalfOpen,
            Breaker::Closed { .. } if inner.paused_until.is_some_and(|p| p > now) => {
                GateState::Paused
            }
            Breaker::Closed { .. } => GateState::Closed,
        }
    }

    /// Whether more work for this bank would only wait: as many calls wait for a slot as it
    /// has slots, or the breaker refuses calls. The workers claim nothing more for it then.
    pub fn crowded(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= self.limits.max_in_flight.max(1) as usize
            || self.state() == GateState::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_in_flight: u32, requests_per_second: f64) -> Arc<Gate> {
        Gate::new(BankLimits {
            max_in_flight,
            requests_per_second,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_bank_for_its_retry_after() {
        let g = gate(4, f64::INFINITY);
        let pass = g.enter().await.unwrap();
        g.done(
            pass,
            Err(&BankError::RateLimited {
                retry_after: Some(2),
            }),
        );
        assert_eq!(g.state(), GateState::Paused);
        let started = Instant::now();
        let pass = g.enter().await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        g.done(pass, Ok(()));
        assert_eq!(g.state(), GateState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_half_opens_and_closes() {
        let g = gate(8, f64::INFINITY);
        for _ in 0..FAILURES_TO_OPEN {
            let pass = g.enter().await.unwrap();
            g.done(pass, Err(&BankError::Timeout));
        }
        assert_eq!(g.state(), GateState::Open);
        assert!(g.crowded());
        assert_eq!(g.enter().await.unwrap_err(), BankError::Unavailable);
        // The cool-down passes: one probe, the others refused while it is out.
        tokio::time::advance(FIRST_COOL_DOWN).await;
        assert_eq!(g.state(), GateState::HalfOpen);
        let probe = g.enter().await.unwrap();
        assert_eq!(g.enter().await.unwrap_err(), BankError::Unavailable);
        // It fails: open again, for twice as long.
        g.done(probe, Err(&BankError::Unavailable));
        assert_eq!(g.state(), GateState::Open);
        tokio::time::advance(FIRST_COOL_DOWN).await;
        assert_eq!(g.state(), GateState::Open);
        tokio::time::advance(FIRST_COOL_DOWN).await;
        let probe = g.enter().await.unwrap();
        // It succeeds: closed, calls flow.
        g.done(probe, Ok(()));
        assert_eq!(g.state(), GateState::Closed);
        let pass = g.enter().await.unwrap();
        g.done(pass, Err(&BankError::ConsentRevoked));
        assert_eq!(g.state(), GateState::Closed, "the bank answered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_lets_the_next_call_probe() {
        let g = gate(8, f64::INFINITY);
        for _ in 0..FAILURES_TO_OPEN {
            let pass = g.enter().await.unwrap();
            g.done(pass, Err(&BankError::Unavailable));
        }
        tokio::time::advance(FIRST_COOL_DOWN).await;
        drop(g.enter().await.unwrap());
        assert!(g.enter().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_paced_and_bounded() {
        let g = gate(2, 10.0);
        let started = Instant::now();
        let a = g.enter().await.unwrap();
        let b = g.enter().await.unwrap();
        // The third waits for a slot.
        let waiting = {
            let g = Arc::clone(&g);
            tokio::spawn(async move { g.enter().await.map(|_| Instant::now()) })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished());
        assert!(!g.crowded(), "one waiting of two slots");
        g.done(a, Ok(()));
        let third = waiting.await.unwrap().unwrap();
        // Started 100 ms apart at most 10 a second: the third no earlier than 200 ms in.
        assert!(third - started >= Duration::from_millis(200));
        g.done(b, Ok(()));
    }
}
