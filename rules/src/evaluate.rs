//! The decision itself: rules 1–4 of the crate docs.

use chrono::{DateTime, Utc};

use crate::model::{AccountDecision, AccountState, Decision, SkipReason, Status, Verdict};
use crate::policy::RefreshPolicy;

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
    // One pass decides each account as if nothing were stale (rules 1 and 4) and notes
    // whether any eligible account is stale; rule 3 then flips the eligible ones.
    let mut any_stale = false;
    // Computed once, so that deciding staleness is one comparison per account.
    let stale_if_refreshed_by = now.checked_sub_signed(policy.interval());
    let mut decisions: Vec<AccountDecision<'a>> = accounts
        .iter()
        .map(|account| {
            let (verdict, next_eligible_at) = if !account.consent_valid_at(now) {
                (Verdict::Skipped(SkipReason::AccountExpired), None)
            } else {
                let next = match account.effective_refreshed_at() {
                    // Rule 2: stale when `now - refreshed >= interval`, i.e. refreshed at or
                    // before `now - interval`. A date in the future is within (refreshed
                    // "just now"), and an account never refreshed is stale.
                    Some(at) if stale_if_refreshed_by.is_none_or(|by| at > by) => {
                        // Rate-limited until `at + interval`, which only helps if the consent
                        // still holds then.
                        at.checked_add_signed(policy.interval())
                            .filter(|&at| account.consent_valid_at(at))
                    }
                    _ => {
                        any_stale = true;
                        None
                    }
                };
                (Verdict::Skipped(SkipReason::RateLimited), next)
            };
            AccountDecision {
                account_id: &account.account_id,
                verdict,
                next_eligible_at,
            }
        })
        .collect();

    let next_refresh_available_at = if any_stale {
        for d in &mut decisions {
            if d.verdict == Verdict::Skipped(SkipReason::RateLimited) {
                d.verdict = Verdict::Triggered;
                d.next_eligible_at = None;
            }
        }
        None
    } else {
        decisions.iter().filter_map(|d| d.next_eligible_at).min()
    };

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
