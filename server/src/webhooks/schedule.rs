//! When a failed delivery is tried again: a pure function of the attempt number, a random
//! number and the receiver's `Retry-After`, so that every rule is a property test.
//!
//! The ladder of the contract — 5 s, 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,
//! 24 h — about three days in all, each step spread by ±20 % so that deliveries failing
//! together do not come back together. Eleven attempts, then the delivery fails (and
//! can still be redelivered or recovered by hand).

use std::time::Duration;

const LADDER: [u64; 10] = [
    5,
    60,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
];

/// Attempts in all, the first included.
pub const MAX_ATTEMPTS: u32 = LADDER.len() as u32 + 1;

/// The longest wait a `Retry-After` can ask for (the ladder's last step).
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// How long to wait after attempt `attempt` (1-based) failed, or `None` when it was the
/// last. `random` in `[0, 1)` picks the jitter; a `Retry-After` from the receiver is
/// honoured as a floor, up to [`MAX_DELAY`].
pub fn next_delay(attempt: u32, random: f64, retry_after: Option<Duration>) -> Option<Duration> {
    let step = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let base = Duration::from_secs(*LADDER.get(step)?);
    let jittered = base.mul_f64(0.8 + 0.4 * random.clamp(0.0, 1.0));
    Some(match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_DELAY)),
        None => jittered,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_first_retry_comes_after_about_five_seconds() {
        assert_eq!(next_delay(1, 0.5, None), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(1, 0.0, None), Some(Duration::from_secs(4)));
        assert_eq!(
            next_delay(10, 0.5, None),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(next_delay(MAX_ATTEMPTS, 0.5, None), None);
        assert_eq!(next_delay(0, 0.5, None), None);
    }

    proptest! {
        #[test]
        fn every_delay_is_its_step_within_twenty_percent(attempt in 1..MAX_ATTEMPTS, r in 0.0..1.0_f64) {
            let base = LADDER[attempt as usize - 1] as f64;
            let d = next_delay(attempt, r, None).unwrap().as_secs_f64();
            prop_assert!(d >= base * 0.8 - 1e-6 && d <= base * 1.2 + 1e-6, "{d} vs {base}");
        }

        #[test]
        fn with_the_same_draw_delays_never_shrink_from_one_attempt_to_the_next(attempt in 1..MAX_ATTEMPTS - 1, r in 0.0..1.0_f64) {
            // (Across draws they may: 20 h + 20 % is more than 24 h - 20 %.)
            prop_assert!(next_delay(attempt + 1, r, None) > next_delay(attempt, r, None));
        }

        #[test]
        fn retry_after_is_a_floor_up_to_a_day(attempt in 1..MAX_ATTEMPTS, r in 0.0..1.0_f64, asked in 0_u64..400_000) {
            let asked = Duration::from_secs(asked);
            let d = next_delay(attempt, r, Some(asked)).unwrap();
            prop_assert!(d >= asked.min(MAX_DELAY));
            prop_assert!(d >= next_delay(attempt, r, None).unwrap());
            prop_assert!(d <= MAX_DELAY.mul_f64(1.2));
        }

        #[test]
        fn the_whole_ladder_spans_about_three_days(r in proptest::collection::vec(0.0..1.0_f64, 10)) {
            let total: Duration = (1..MAX_ATTEMPTS).zip(&r).map(|(a, r)| next_delay(a, *r, None).unwrap()).sum();
            let days = total.as_secs_f64() / 86_400.0;
            prop_assert!((2.5..=3.8).contains(&days), "{days}");
        }

        #[test]
        fn there_is_no_retry_after_the_last_attempt(attempt in MAX_ATTEMPTS.., r in 0.0..1.0_f64, asked in proptest::option::of(0_u64..10)) {
            prop_assert_eq!(next_delay(attempt, r, asked.map(Duration::from_secs)), None);
        }
    }
}
