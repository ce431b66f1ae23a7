//! When a failed bank fetch is tried again, inside its job: a pure function of the attempt
//! number, the failure, a random number and the policy — no clock, no RNG of its own — so
//! that every rule below is a property test.

use std::time::Duration;

use super::BankError;

/// How hard a job tries one account before it fails the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles with each further one.
    pub base: Duration,
    /// No wait is longer than this; a bank asking for more (`Retry-After`) fails the item now.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, 500 ms doubling, at most 10 s between two.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before the next attempt after `attempt` (1-based) failed with
    /// `error`, or `None` to give up. `random` in `[0, 1)` spreads retries ("full jitter":
    /// uniformly up to the exponential ceiling), so that accounts failing together do not
    /// come back together.
    pub fn next_delay(&self, attempt: u32, error: &BankError, random: f64) -> Option<Duration> {
        if !error.retryable() || attempt >= self.max_attempts {
            return None;
        }
        let ceiling = self
            .base
            .saturating_mul(1_u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jittered = ceiling.mul_f64(random.clamp(0.0, 1.0));
        match error {
            BankError::RateLimited {
                retry_after: Some(seconds),
            } => {
                let asked = Duration::from_secs(*seconds);
                (asked <= self.max_delay).then(|| asked.max(jittered))
            }
            _ => Some(jittered),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn error() -> impl Strategy<Value = BankError> {
        prop_oneof![
            Just(BankError::Unavailable),
            Just(BankError::Timeout),
            proptest::option::of(0_u64..60)
                .prop_map(|retry_after| BankError::RateLimited { retry_after }),
            Just(BankError::ConsentRevoked),
            Just(BankError::Internal("x".into())),
        ]
    }

    fn policy() -> impl Strategy<Value = RetryPolicy> {
        (1_u32..8, 1_u64..2_000, 1_u64..60_000).prop_map(|(max_attempts, base, max)| RetryPolicy {
            max_attempts,
            base: Duration::from_millis(base),
            max_delay: Duration::from_millis(max),
        })
    }

    proptest! {
        /// No wait is ever longer than the policy's ceiling.
        #[test]
        fn a_delay_never_exceeds_the_ceiling(p in policy(), attempt in 1_u32..10, e in error(), r in 0.0_f64..1.0) {
            if let Some(d) = p.next_delay(attempt, &e, r) {
                prop_assert!(d <= p.max_delay);
            }
        }

        /// Failures that asking again cannot fix (revoked consent, internal) are never retried.
        #[test]
        fn non_retryable_failures_are_never_retried(p in policy(), attempt in 1_u32..10, e in error(), r in 0.0_f64..1.0) {
            if !e.retryable() {
                prop_assert_eq!(p.next_delay(attempt, &e, r), None);
            }
        }

        /// There is never an attempt beyond `max_attempts`.
        #[test]
        fn attempts_stop_at_the_maximum(p in policy(), e in error(), r in 0.0_f64..1.0) {
            prop_assert_eq!(p.next_delay(p.max_attempts, &e, r), None);
        }

        /// A bank's `Retry-After` is honoured: we never come back sooner than it asked,
        /// and we give up at once when it asks for more than the ceiling.
        #[test]
        fn retry_after_is_honoured(p in policy(), attempt in 1_u32..10, seconds in 0_u64..60, r in 0.0_f64..1.0) {
            let e = BankError::RateLimited { retry_after: Some(seconds) };
            match p.next_delay(attempt, &e, r) {
                Some(d) => prop_assert!(d >= Duration::from_secs(seconds)),
                None => prop_assert!(attempt >= p.max_attempts || Duration::from_secs(seconds) > p.max_delay),
            }
        }

        /// The jitter's ceiling doubles with each attempt until the policy's ceiling: the
        /// same randomness never waits less on a later attempt.
        #[test]
        fn later_attempts_never_wait_less_for_the_same_randomness(p in policy(), attempt in 1_u32..9, r in 0.0_f64..1.0) {
            let p = RetryPolicy { max_attempts: 10, ..p };
            let now = p.next_delay(attempt, &BankError::Unavailable, r).unwrap();
            let later = p.next_delay(attempt + 1, &BankError::Unavailable, r).unwrap();
            prop_assert!(later >= now);
        }
    }

    #[test]
    fn the_default_policy_tries_three_times_with_growing_ceilings() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, &BankError::Timeout, 0.999_999),
            Some(Duration::from_millis(500).mul_f64(0.999_999))
        );
        assert_eq!(
            p.next_delay(2, &BankError::Timeout, 0.5),
            Some(Duration::from_millis(500))
        );
        assert_eq!(p.next_delay(3, &BankError::Timeout, 0.5), None);
        assert_eq!(
            p.next_delay(
                1,
                &BankError::RateLimited {
                    retry_after: Some(11)
                },
                0.5
            ),
            None
        );
        assert_eq!(
            p.next_delay(
                1,
                &BankError::RateLimited {
                    retry_after: Some(2)
                },
                0.1
            ),
            Some(Duration::from_secs(2))
        );
    }
}
