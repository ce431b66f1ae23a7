//! The server's clock: the system clock plus an offset, so that the rules, the workers and
//! the tests agree on one `now` without sleeping; tests may also freeze it, to hit exact
//! boundaries through HTTP. On top of it, each partner may have its own offset (the
//! sandbox's `POST /sandbox/v1/clock`): everything done for that partner's users — refresh
//! decisions, bank data, scheduling, timestamps — reads [`Clock::now_for`], so one partner
//! moving its time never moves another's.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// Not frozen.
const RUNNING: i64 = i64::MIN;

/// The one source of `now` on the server.
#[derive(Debug)]
pub struct Clock {
    offset_ms: AtomicI64,
    frozen_ms: AtomicI64,
    /// Partners' own offsets (ms), on top of the server's.
    partners: RwLock<HashMap<Uuid, i64>>,
    /// Whether any partner has an offset: the hot path skips the lock when none has.
    any_partner: AtomicBool,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            frozen_ms: AtomicI64::new(RUNNING),
            partners: RwLock::default(),
            any_partner: AtomicBool::new(false),
        }
    }
}

impl Clock {
    /// A clock stopped at `at` until [`Clock::set`] moves it.
    pub fn frozen(at: DateTime<Utc>) -> Self {
        let clock = Self::default();
        clock.set(at);
        clock
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

    /// `partner`'s now: the server's, moved by the partner's own offset.
    pub fn now_for(&self, partner: Uuid) -> DateTime<Utc> {
        self.now() + self.offset_of(partner)
    }

    /// `partner`'s own offset (zero unless its sandbox set one).
    pub fn offset_of(&self, partner: Uuid) -> TimeDelta {
        if !self.any_partner.load(Ordering::Relaxed) {
            return TimeDelta::zero();
        }
        let ms = self
            .partners
            .read()
            .map_or(0, |m| m.get(&partner).copied().unwrap_or(0));
        TimeDelta::milliseconds(ms)
    }

    /// Sets `partner`'s own offset; zero removes it.
    pub fn set_offset_of(&self, partner: Uuid, offset: TimeDelta) {
        if let Ok(mut m) = self.partners.write() {
            if offset.is_zero() {
                m.remove(&partner);
            } else {
                m.insert(partner, offset.num_milliseconds());
            }
            self.any_partner.store(!m.is_empty(), Ordering::Relaxed);
        }
    }

    /// Moves `partner`'s time by `by` from where it is.
    pub fn shift_of(&self, partner: Uuid, by: TimeDelta) {
        self.set_offset_of(partner, self.offset_of(partner) + by);
    }

    /// The partners with an offset of their own, and their offsets.
    pub fn partner_offsets(&self) -> Vec<(Uuid, TimeDelta)> {
        if !self.any_partner.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.partners.read().map_or_else(
            |_| Vec::new(),
            |m| {
                m.iter()
                    .map(|(p, ms)| (*p, TimeDelta::milliseconds(*ms)))
                    .collect()
            },
        )
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
    fn a_partners_offset_moves_only_that_partners_now() {
        let at = DateTime::from_timestamp_millis(1_790_000_000_000).unwrap();
        let clock = Clock::frozen(at);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        clock.set_offset_of(a, TimeDelta::hours(1));
        assert_eq!(clock.now_for(a), at + TimeDelta::hours(1));
        assert_eq!(clock.now_for(b), at);
        assert_eq!(clock.now(), at);
        clock.shift_of(a, TimeDelta::minutes(-60));
        assert_eq!(clock.now_for(a), at);
        assert!(
            clock.partner_offsets().is_empty(),
            "a zero offset is no offset"
        );
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
