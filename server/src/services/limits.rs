//! How much one partner may hold and do: every quota in one place, each configurable at
//! start-up (`freshet serve --help`), each refused with [`Error::LimitReached`] naming it.
//! They keep one partner from taking what others need: the webhook deliverer's pool, the
//! database, the API's time.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter};

use super::Error;

/// The quotas of every partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Webhook subscriptions one partner may hold.
    pub subscriptions_per_partner: u32,
    /// Users one partner may hold on a sandbox server.
    pub sandbox_users_per_partner: u32,
    /// Accounts one user may hold, in the sandbox.
    pub sandbox_accounts_per_user: u32,
    /// Transactions one sandbox account may start with (history made up at connection).
    pub sandbox_transactions_per_account: u32,
    /// Transactions of made-up history one partner's sandbox users may hold in all: what
    /// bounds a partner's share of the disk (about 0.8 KB each, indexes included).
    pub sandbox_transactions_per_partner: u32,
    /// Transactions one partner's sandbox users may hold in all, fetched ones included: what
    /// bounds the disk however far the partner moves its clock (each move opens new bank
    /// history). Checked at every ingestion; a fetch past it stores nothing and fails.
    pub sandbox_stored_transactions_per_partner: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            subscriptions_per_partner: 20,
            sandbox_users_per_partner: 1_000,
            sandbox_accounts_per_user: 20,
            sandbox_transactions_per_account: 1_000,
            sandbox_transactions_per_partner: 100_000,
            // Room for every account a partner may hold to fetch its bank's 90 days a
            // few times over (~0.8 GB at most), well past any sandbox test.
            sandbox_stored_transactions_per_partner: 1_000_000,
        }
    }
}

/// Which quota a request would pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::subscriptions_per_partner`].
    Subscriptions,
    /// One of the sandbox's quotas.
    Sandbox,
}

impl Limit {
    /// The stable code the API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Self::Subscriptions => "SUBSCRIPTION_LIMIT_REACHED",
            Self::Sandbox => "SANDBOX_QUOTA_EXCEEDED",
        }
    }

    /// The error saying `detail`.
    pub(super) fn reached(self, detail: String) -> Error {
        Error::LimitReached(self, detail)
    }
}

/// A partner's share of the API: a token bucket per partner (`per_second` tokens a second,
/// holding at most `burst`), so that one partner's flood is refused before it takes the
/// server's time from the others.
#[derive(Debug)]
pub struct ApiRate {
    buckets: KeyedLimit<uuid::Uuid>,
    per_second: u32,
    burst: u32,
}

/// A request refused by [`ApiRate`]: when to come back, and the policy that refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// Whole seconds until a request would be admitted (at least 1).
    pub retry_after_seconds: u64,
    /// Tokens a second.
    pub per_second: u32,
    /// The bucket's size.
    pub burst: u32,
}

impl ApiRate {
    /// `per_second` requests a second per partner, bursts of up to `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN);
        let size = std::num::NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Self {
            buckets: KeyedLimit::new(governor::Quota::per_second(rate).allow_burst(size)),
            per_second: rate.get(),
            burst: size.get(),
        }
    }

    /// Takes one token of `partner`'s bucket, or says when one will be there.
    pub fn admit(&self, partner: uuid::Uuid) -> Result<(), Throttled> {
        use governor::clock::Clock as _;
        self.buckets.check(&partner).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.buckets.clock.now());
            Throttled {
                retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                per_second: self.per_second,
                burst: self.burst,
            }
            .at_least_a_second()
        })
    }
}

/// A governor limiter with one bucket per key that also forgets: every [`FORGET_EVERY`]
/// checks it drops the buckets that have refilled (indistinguishable from new ones), so a
/// spray of keys (addresses, partners) does not grow memory for ever.
#[derive(Debug)]
pub(super) struct KeyedLimit<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    checks: AtomicU64,
}

/// How many checks pass between two clean-ups of a [`KeyedLimit`].
pub(super) const FORGET_EVERY: u64 = 1024;

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// Buckets of `quota`, on the real clock.
    pub(super) fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimit<K, C> {
    /// Buckets of `quota`, on `clock`.
    pub(super) fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token from `key`'s bucket, or says when there will be one.
    pub(super) fn check(&self, key: &K) -> Result<(), NotUntil<C::Instant>> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key)
    }

    /// How many keys it holds a bucket for.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.limiter.len()
    }
}

impl Throttled {
    fn at_least_a_second(self) -> Self {
        Self {
            retry_after_seconds: self.retry_after_seconds.max(1),
            ..self
        }
    }

    /// The IETF draft's `RateLimit-Policy` value: the bucket as a quota over the time it
    /// takes to fill.
    pub fn policy_header(&self) -> String {
        let window = self.burst.div_ceil(self.per_second.max(1)).max(1);
        format!("\"partner\";q={};w={window}", self.burst)
    }

    /// The IETF draft's `RateLimit` value: none left, and when more will be.
    pub fn limit_header(&self) -> String {
        format!("\"partner\";r=0;t={}", self.retry_after_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_past_its_burst_is_throttled_and_another_is_not() {
        let rate = ApiRate::new(1, 3);
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        for _ in 0..3 {
            assert_eq!(rate.admit(a), Ok(()));
        }
        let refused = rate.admit(a).unwrap_err();
        assert_eq!(refused.retry_after_seconds, 1);
        assert_eq!(refused.policy_header(), "\"partner\";q=3;w=3");
        assert_eq!(refused.limit_header(), "\"partner\";r=0;t=1");
        assert_eq!(rate.admit(b), Ok(()));
    }

    #[test]
    fn a_keyed_limit_forgets_the_buckets_that_have_refilled() {
        let clock = governor::clock::FakeRelativeClock::default();
        let quota = Quota::per_second(std::num::NonZeroU32::MIN);
        let limit = KeyedLimit::with_clock(quota, clock.clone());
        // The clean-up comes with the FORGET_EVERY-th check: the last one below.
        for n in 0..FORGET_EVERY - 2 {
            assert!(limit.check(&n).is_ok());
        }
        assert!(limit.check(&0).is_err(), "still limited");
        assert_eq!(limit.keys(), usize::try_from(FORGET_EVERY - 2).unwrap_or(0));
        clock.advance(std::time::Duration::from_secs(5));
        assert!(limit.check(&u64::MAX).is_ok(), "the clean-up's turn");
        assert!(limit.keys() <= 1, "{} kept", limit.keys());
    }
}
