//! Properties the rules keep for every input, checked with proptest on random users.
#![cfg(not(target_arch = "wasm32"))]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use freshet_rules::{
    AccountState, ConsentStatus, Decision, RefreshPolicy, SkipReason, Status, Verdict, evaluate,
};
use proptest::prelude::*;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
        .single()
        .expect("valid date")
}

/// An offset from `base()` within three hours before to one hour after, in milliseconds
/// (coarse values are likelier, so that exact boundaries come up often).
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-180_i64..60).prop_map(|m| m * 60_000),
        (-10_800_000_i64..3_600_000),
    ]
}

fn account(i: usize) -> impl Strategy<Value = AccountState> {
    (
        prop_oneof![4 => Just(ConsentStatus::Active), 1 => Just(ConsentStatus::Expired)],
        proptest::option::weighted(0.3, offset()),
        proptest::option::weighted(0.8, offset()),
        proptest::option::weighted(0.2, offset()),
    )
        .prop_map(move |(consent_status, expires, last, in_flight)| {
            let at = |ms: i64| base() + TimeDelta::milliseconds(ms);
            AccountState {
                account_id: format!("acc-{i:03}"),
                consent_status,
                consent_expires_at: expires.map(at),
                last_transaction_refresh_date: last.map(at),
                in_flight_since: in_flight.map(at),
            }
        })
}

fn accounts() -> impl Strategy<Value = Vec<AccountState>> {
    (0_usize..8).prop_flat_map(|n| (0..n).map(account).collect::<Vec<_>>())
}

fn now() -> impl Strategy<Value = DateTime<Utc>> {
    offset().prop_map(|ms| base() + TimeDelta::milliseconds(ms))
}

fn policy() -> impl Strategy<Value = RefreshPolicy> {
    prop_oneof![
        3 => Just(RefreshPolicy::default()),
        1 => (1_i64..7200).prop_map(|s| RefreshPolicy::from_seconds(s).expect("positive")),
    ]
}

fn verdict_of(decision: &Decision<'_>, id: &str) -> Verdict {
    decision
        .accounts
        .iter()
        .find(|a| a.account_id == id)
        .expect("every account is decided")
        .verdict
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// The answer is 201 (status TRIGGERED) if and only if at least one account is triggered.
    #[test]
    fn created_if_and_only_if_some_account_triggered(accounts in accounts(), now in now(), policy in policy()) {
        let d = evaluate(&accounts, now, &policy);
        let any = d.accounts.iter().any(|a| a.verdict == Verdict::Triggered);
        prop_assert_eq!(d.status == Status::Triggered, any);
        prop_assert_eq!(d.http_status() == 201, any);
    }

    /// Every input account is decided exactly once, and the decisions are sorted by accountId.
    #[test]
    fn each_account_is_decided_once_in_id_order(accounts in accounts(), now in now(), policy in policy()) {
        let d = evaluate(&accounts, now, &policy);
        let mut ids: Vec<&str> = accounts.iter().map(|a| a.account_id.as_str()).collect();
        ids.sort_unstable();
        let decided: Vec<&str> = d.accounts.iter().map(|a| a.account_id).collect();
        prop_assert_eq!(decided, ids);
    }

    /// All eligible accounts (valid consent) share one outcome: all triggered or all rate-limited.
    #[test]
    fn all_eligible_accounts_share_one_outcome(accounts in accounts(), now in now(), policy in policy()) {
        let d = evaluate(&accounts, now, &policy);
        let mut eligible = accounts.iter().filter(|a| a.has_valid_consent(now)).map(|a| verdict_of(&d, &a.account_id));
        if let Some(first) = eligible.next() {
            prop_assert!(first == Verdict::Triggered || first == Verdict::Skipped(SkipReason::RateLimited));
            for v in eligible { prop_assert_eq!(v, first); }
        }
    }

    /// An account without valid consent is never triggered: it is skipped as ACCOUNT_EXPIRED.
    #[test]
    fn an_expired_account_is_never_triggered(accounts in accounts(), now in now(), policy in policy()) {
        let d = evaluate(&accounts, now, &policy);
        for a in accounts.iter().filter(|a| !a.has_valid_consent(now)) {
            prop_assert_eq!(verdict_of(&d, &a.account_id), Verdict::Skipped(SkipReason::AccountExpired));
        }
    }

    /// The decision does not depend on the order in which the accounts are given.
    #[test]
    fn the_decision_does_not_depend_on_account_order(
        (accounts, shuffled) in accounts().prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle())),
        now in now(), policy in policy(),
    ) {
        prop_assert_eq!(evaluate(&accounts, now, &policy), evaluate(&shuffled, now, &policy));
    }

    /// Moving `now` forward never turns a TRIGGERED account into RATE_LIMITED, as long as no
    /// consent ends in between. (When one does, it can: a stale account whose consent ends
    /// stops pulling the fresh ones along — see the vector "the same accounts two minutes later".)
    #[test]
    fn moving_now_forward_never_turns_triggered_into_rate_limited(
        accounts in accounts(), now in now(), later_ms in 0_i64..7_200_000, policy in policy(),
    ) {
        let later = now + TimeDelta::milliseconds(later_ms);
        let consent_ends_between = accounts.iter().any(|a| a.has_valid_consent(now) && !a.has_valid_consent(later));
        prop_assume!(!consent_ends_between);
        let (before, after) = (evaluate(&accounts, now, &policy), evaluate(&accounts, later, &policy));
        for a in before.accounts.iter().filter(|a| a.verdict == Verdict::Triggered) {
            prop_assert_ne!(verdict_of(&after, a.account_id), Verdict::Skipped(SkipReason::RateLimited));
        }
    }

    /// `nextRefreshAvailableAt` is exactly the earliest moment a request triggers: at it the
    /// decision is TRIGGERED, one millisecond before it is not. When it is absent on a skip,
    /// no later moment triggers either (checked at a few points up to a day ahead).
    #[test]
    fn next_refresh_available_at_is_the_earliest_triggering_moment(accounts in accounts(), now in now(), policy in policy()) {
        let d = evaluate(&accounts, now, &policy);
        match (d.status, d.next_refresh_available_at) {
            (Status::Triggered, next) => prop_assert_eq!(next, None),
            (Status::Skipped, Some(next)) => {
                prop_assert!(next > now);
                prop_assert_eq!(evaluate(&accounts, next, &policy).status, Status::Triggered);
                let just_before = next - TimeDelta::milliseconds(1);
                prop_assert_eq!(evaluate(&accounts, just_before, &policy).status, Status::Skipped);
                let wait = d.retry_after_seconds(now).expect("a next moment gives a Retry-After");
                prop_assert!(now + TimeDelta::seconds(i64::try_from(wait).expect("small")) >= next);
            }
            (Status::Skipped, None) => {
                for minutes in [1, 20, 61, 180, 1440] {
                    let later = now + TimeDelta::minutes(minutes);
                    prop_assert_eq!(evaluate(&accounts, later, &policy).status, Status::Skipped);
                }
            }
        }
    }
}
