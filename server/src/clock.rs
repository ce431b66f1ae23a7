//! The server's clock: the system clock plus an offset that the sandbox can shift, so
//! that the rules, the workers and the tests agree on one `now` without sleeping. Tests
//! may also freeze it, to hit exact boundaries through HTTP.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// Not frozen.
const RUNNING: i64 = i64::MIN;

/// The one source of `now` on the server.
#[derive(Debug)]
pub struct Clock {
    offset_ms: AtomicI64,
    frozen_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            frozen_ms: AtomicI64::new(RUNNING),
        }
    }
}

impl Clock {
    /// A clock stopped at `at` until [`Clock::set`] moves it.
    pub fn frozen(at: DateTime<Utc>) -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            frozen_ms: AtomicI64::new(at.timestamp_millis()),
        }
    }

    /// The current instant: the frozen one, or the system clock shifted by the offset.
    pub fn now(&self) -> DateTime<Utc> {
        match self.frozen_ms.load(Ordering::Relaxed) {
            RUNNING => {
                DateTime::<Utc>::from(std::time::SystemTime::now())
                    + TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
            }
            ms => DateTime::from_timestamp_millis(ms).unwrap_or_default(),
        }
    }

    /// Stops the clock at `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.frozen_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// Moves the clock by `by` (forward or back) from where it is now.
    pub fn shift(&self, by: TimeDelta) {
        let ms = by.num_milliseconds();
        if self.frozen_ms.load(Ordering::Relaxed) == RUNNING {
            self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        } else {
            self.frozen_ms.fetch_add(ms, Ordering::Relaxed);
        }
    }

    /// Sets the offset from the system clock (and lets a frozen clock run again).
    pub fn set_offset(&self, offset: TimeDelta) {
        self.offset_ms
            .store(offset.num_milliseconds(), Ordering::Relaxed);
        self.frozen_ms.store(RUNNING, Ordering::Relaxed);
    }

    /// The offset from the system clock.
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_moves_now_by_the_offset() {
        let clock = Clock::default();
        let before = clock.now();
        clock.shift(TimeDelta::minutes(20));
        let after = clock.now();
        assert!(after - before >= TimeDelta::minutes(20));
        assert!(after - before < TimeDelta::minutes(21));
    }

    #[test]
    fn a_frozen_clock_moves_only_when_told() {
        let at = DateTime::from_timestamp_millis(1_790_000_000_000).unwrap();
        let clock = Clock::frozen(at);
        assert_eq!(clock.now(), at);
        clock.shift(TimeDelta::seconds(90));
        assert_eq!(clock.now(), at + TimeDelta::seconds(90));
    }
}
