//! What the portal (and a partner's own web app) shows before anyone clicks "Refresh":
//! the decision plus a sentence and a countdown, worded in one place.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::evaluate::evaluate;
use crate::model::{AccountState, Decision, SkipReason, Status, Verdict};
use crate::policy::RefreshPolicy;

/// The decision a refresh would get right now, with a summary for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview<'a> {
    /// The decision, exactly as the server would make it at the same `now`.
    pub decision: Decision<'a>,
    /// How many accounts would trigger.
    pub triggered: usize,
    /// How many accounts the user has.
    pub total: usize,
    /// Whole seconds until `nextRefreshAvailableAt`, rounded up; absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_until_next_refresh: Option<u64>,
    /// One sentence: "Refresh will trigger 2 of 3 accounts." and the like.
    pub summary: String,
}

/// Evaluates `accounts` at `now` and explains the result in one sentence.
pub fn preview<'a>(
    accounts: &'a [AccountState],
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> Preview<'a> {
    let decision = evaluate(accounts, now, policy);
    let total = decision.accounts.len();
    let triggered = decision.triggered().count();
    let seconds_until_next_refresh = decision.retry_after_seconds(now);
    let summary = match (decision.status, seconds_until_next_refresh) {
        (Status::Triggered, _) => {
            format!(
                "Refresh will trigger {triggered} of {total} {}.",
                plural(total, "account", "accounts")
            )
        }
        (Status::Skipped, Some(secs)) => {
            format!(
                "Rate-limited: next refresh possible in {}.",
                format_countdown(secs)
            )
        }
        (Status::Skipped, None) if total == 0 => {
            "No connected accounts: nothing to refresh.".to_owned()
        }
        (Status::Skipped, None) => {
            let all_expired = decision
                .accounts
                .iter()
                .all(|a| a.verdict == Verdict::Skipped(SkipReason::AccountExpired));
            if all_expired {
                "Nothing to refresh: every account's consent has expired.".to_owned()
            } else {
                "Nothing to refresh: every consent ends before the next refresh is allowed."
                    .to_owned()
            }
        }
    };
    Preview {
        decision,
        triggered,
        total,
        seconds_until_next_refresh,
        summary,
    }
}

/// A countdown as people read it: `12:31`, or `1:02:03` past an hour.
pub fn format_countdown(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn plural<'s>(n: usize, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_reads_minutes_and_seconds_then_hours() {
        assert_eq!(format_countdown(0), "0:00");
        assert_eq!(format_countdown(751), "12:31");
        assert_eq!(format_countdown(3723), "1:02:03");
    }
}
