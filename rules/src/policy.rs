//! The refresh interval: configuration with a default, never a literal elsewhere.

use chrono::TimeDelta;

/// The default refresh interval, in seconds: twenty minutes.
pub const DEFAULT_REFRESH_INTERVAL_SECONDS: i64 = 20 * 60;

/// The configurable part of the rules: how long after a refresh an account counts as fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    interval: TimeDelta,
}

/// Why a [`RefreshPolicy`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The interval must be at least one second (and at most about 292 billion years).
    IntervalOutOfRange,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IntervalOutOfRange => {
                f.write_str("the refresh interval must be a positive number of seconds")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

impl RefreshPolicy {
    /// A policy with the given interval; it must be positive.
    pub fn new(interval: TimeDelta) -> Result<Self, PolicyError> {
        if interval <= TimeDelta::zero() {
            return Err(PolicyError::IntervalOutOfRange);
        }
        Ok(Self { interval })
    }

    /// A policy with an interval of `seconds` seconds; it must be positive.
    pub fn from_seconds(seconds: i64) -> Result<Self, PolicyError> {
        TimeDelta::try_seconds(seconds)
            .ok_or(PolicyError::IntervalOutOfRange)
            .and_then(Self::new)
    }

    /// How long after a refresh an account counts as fresh.
    pub fn interval(&self) -> TimeDelta {
        self.interval
    }
}

impl Default for RefreshPolicy {
    /// Twenty minutes, the interval partners know.
    fn default() -> Self {
        Self {
            interval: TimeDelta::seconds(DEFAULT_REFRESH_INTERVAL_SECONDS),
        }
    }
}
