//! The decision itself: rules 1–4 of the crate docs, in two passes over the accounts.

use chrono::{DateTime, Utc};

use crate::model::{AccountDecision, AccountState, Decision, SkipReason, Status, Verdict};
use crate::policy::RefreshPolicy;

/// When an eligible account turns stale.
enum Staleness {
    /// Never refreshed, so stale already.
    Always,
    /// Stale from this moment on (`refreshed + interval`; exactly then it is stale).
    From(DateTime<Utc>),
    /// The refresh date is so far in the future that adding the interval overflows.
    Never,
}

fn staleness(account: &AccountState, policy: &RefreshPolicy) -> Staleness {
    match account.effective_refreshed_at() {
        None => Staleness::Always,
        Some(at) => at
            .checked_add_signed(policy.interval())
            .map_or(Staleness::Never, Staleness::From),
    }
}

fn is_stale(account: &AccountState, now: DateTime<Utc>, policy: &RefreshPolicy) -> bool {
    match staleness(account, policy) {
        Staleness::Always => true,
        // `now - refreshed < interval` is "within"; so `now >= refreshed + interval` is stale.
        // A refresh date in the future is within (refreshed "just now"), as the spec asks.
        Staleness::From(at) => now >= at,
        Staleness::Never => false,
    }
}

/// Decides a refresh request for `accounts` at `now`.
///
/// Every input account gets one [`AccountDecision`], listed in ascending order of
/// `accountId` (the input is sorted already when it comes from the server; otherwise the
/// output is sorted here, so that the decision never depends on the input's order).
/// Runs in linear time for sorted input and allocates one vector.
pub fn evaluate<'a>(
    accounts: &'a [AccountState],
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> Decision<'a> {
    let any_stale = accounts
        .iter()
        .any(|a| a.consent_valid_at(now) && is_stale(a, now, policy));

    let mut next_refresh_available_at: Option<DateTime<Utc>> = None;
    let mut decisions: Vec<AccountDecision<'a>> = accounts
        .iter()
        .map(|account| {
            let (verdict, next_eligible_at) = if !account.consent_valid_at(now) {
                (Verdict::Skipped(SkipReason::AccountExpired), None)
            } else if any_stale {
                (Verdict::Triggered, None)
            } else {
                // Rate-limited: it turns stale at `at`, which only helps if its consent
                // still holds then.
                let next = match staleness(account, policy) {
                    Staleness::From(at) if account.consent_valid_at(at) => Some(at),
                    _ => None,
                };
                if let Some(at) = next {
                    next_refresh_available_at =
                        Some(next_refresh_available_at.map_or(at, |n| n.min(at)));
                }
                (Verdict::Skipped(SkipReason::RateLimited), next)
            };
            AccountDecision {
                account_id: &account.account_id,
                verdict,
                next_eligible_at,
            }
        })
        .collect();

    if !decisions.is_sorted_by(|a, b| a.account_id <= b.account_id) {
        decisions.sort_by(|a, b| a.account_id.cmp(b.account_id));
    }

    Decision {
        status: if any_stale {
            Status::Triggered
        } else {
            Status::Skipped
        },
        next_refresh_available_at,
        accounts: decisions,
    }
}
