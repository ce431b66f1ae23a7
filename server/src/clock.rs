//! The server's clock: the system clock plus an offset that the sandbox can shift, so
//! that the rules, the workers and the tests agree on one `now` without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// The one source of `now` on the server.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// The current instant, shifted by the sandbox offset.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(std::time::SystemTime::now())
            + TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock by `by` (forward or back) from where it is now.
    pub fn shift(&self, by: TimeDelta) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
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
}
