//! freshet's on-demand refresh rules.
//!
//! One pure function decides, per connected account, whether a partner's
//! `POST /v1/users/{userId}/accounts-refresh` triggers a bank fetch or skips it, and why.
//! The server decides with it; the portal previews with it in wasm; partners can embed
//! it through the `js` feature. No I/O, no async, no clock: `now` is always an argument,
//! so the same input gives the same answer on every target.
//!
//! The rules, as `shared/spec/refresh-semantics.md` states them:
//! 1. an account without valid consent is `SKIPPED` / `ACCOUNT_EXPIRED`;
//! 2. an account refreshed less than the interval (20 minutes by default) ago is *fresh*;
//!    a refresh that is queued or running counts as a refresh at the moment it was triggered;
//! 3. if at least one eligible account is stale, **all** eligible accounts are `TRIGGERED`;
//! 4. otherwise all eligible accounts are `SKIPPED` / `RATE_LIMITED`.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use freshet_rules::{evaluate, AccountState, ConsentStatus, RefreshPolicy, Status};
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
//! let accounts = vec![
//!     AccountState::active("a").refreshed_at(Utc.with_ymd_and_hms(2026, 11, 26, 11, 30, 0).unwrap()),
//!     AccountState::active("b").refreshed_at(Utc.with_ymd_and_hms(2026, 11, 26, 11, 55, 0).unwrap()),
//! ];
//! let decision = evaluate(&accounts, now, &RefreshPolicy::default());
//! assert_eq!(decision.status, Status::Triggered);
//! assert_eq!(decision.http_status(), 201);
//! ```

#![warn(missing_docs)]

mod evaluate;
mod events;
mod model;
mod policy;
mod preview;
mod timestamp;

#[cfg(feature = "js")]
mod js;

pub use evaluate::evaluate;
pub use events::EventType;
pub use model::{
    AccountDecision, AccountState, ConsentStatus, Decision, EvaluationInput, Outcome, SkipReason,
    Status, Verdict, consent_status_at,
};
pub use policy::{DEFAULT_REFRESH_INTERVAL_SECONDS, PolicyError, RefreshPolicy};
pub use preview::{Preview, format_countdown, preview};
pub use timestamp::format_timestamp;

/// Re-exported so that callers name the same time types the rules use.
pub use chrono;
