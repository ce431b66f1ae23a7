//! Webhooks in three parts: subscriptions, the delivery queue, and the attempt log.
//! Deliveries are created by a trigger on `events` (see `0005_webhooks.sql`), in the event's
//! own transaction. Every query a partner reaches is scoped to that partner.

mod attempts;
mod deliveries;
mod subscriptions;

pub use attempts::{AttemptCursor, AttemptPoint};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;

/// What `PATCH` may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionChange {
    /// A new target (already checked by the SSRF guard).
    pub target_url: Option<String>,
    /// New event types (already validated).
    pub event_types: Option<Vec<String>>,
    /// Pause or resume; resuming also re-enables a subscription disabled by a 410.
    pub paused: Option<bool>,
}

/// A delivery claimed for one attempt, with what signing and sending it needs.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    /// The subscription.
    pub subscription_id: String,
    /// Its partner.
    pub partner_id: String,
    /// The event (and delivery) id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's JSON payload.
    pub payload: String,
    /// When the event was committed (the body's `timestamp`).
    pub event_created_at: DateTime<Utc>,
    /// This attempt's number, 1-based.
    pub attempt: u32,
    /// Its place on the retry ladder, 1-based (attempts since the last redeliver or recover).
    pub ladder_step: u32,
    /// Where to send it.
    pub target_url: String,
    /// The secrets that sign it, newest first (two during a rotation).
    pub secrets: Vec<String>,
}

/// How many deliveries one claim may take.
#[derive(Clone, Copy, Debug)]
pub struct ClaimQuota<'a> {
    /// In all.
    pub limit: usize,
    /// In flight at once per subscription, counting what `in_flight` holds.
    pub per_subscription: usize,
    /// In flight at once per partner, counting what `in_flight` holds.
    pub per_partner: usize,
    /// What the claimer has in flight already.
    pub in_flight: &'a InFlight,
}

/// The deliveries a deliverer has in flight, by subscription and by partner.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    /// By subscription id.
    pub subscriptions: HashMap<String, usize>,
    /// By partner id.
    pub partners: HashMap<String, usize>,
}

impl InFlight {
    /// Counts one more for `subscription` of `partner`.
    pub fn add(&mut self, subscription: &str, partner: &str) {
        *self
            .subscriptions
            .entry(subscription.to_owned())
            .or_default() += 1;
        *self.partners.entry(partner.to_owned()).or_default() += 1;
    }

    /// Counts one less.
    pub fn remove(&mut self, subscription: &str, partner: &str) {
        for (map, key) in [
            (&mut self.subscriptions, subscription),
            (&mut self.partners, partner),
        ] {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }

    /// How many in all.
    pub fn total(&self) -> usize {
        self.subscriptions.values().sum()
    }
}

/// How one attempt ended, and what follows for its delivery.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    /// The subscription.
    pub subscription_id: String,
    /// Its partner (for the deliverer's count of what is in flight).
    pub partner_id: String,
    /// The event.
    pub event_id: String,
    /// The attempt's number.
    pub attempt: u32,
    /// Whether a 2xx acknowledged it.
    pub succeeded: bool,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// Milliseconds from the request to the answer or the failure.
    pub latency_ms: u64,
    /// Why it failed.
    pub error_kind: Option<&'static str>,
    /// The start of the answer's body.
    pub response_excerpt: Option<String>,
    /// When to try again; `None` ends the delivery (succeeded, or failed for good).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver answered 410 Gone: disable the subscription.
    pub gone: bool,
}

/// Whether subscription `id` exists and is `partner`'s: another partner's reads as missing.
/// On either backend's pool or transaction ([`super::Conn`]), like
/// `users::owned_by`.
async fn owns(
    partner: Uuid,
    id: Uuid,
    executor: impl Into<super::Conn<'_>>,
) -> Result<bool, StoreError> {
    // The id itself, not `SELECT 1`: PostgreSQL's literal is an int4, SQLite's an integer.
    let row: Option<(String,)> = on_conn!(executor.into(), |c| {
        sqlx::query_as("SELECT id FROM webhook_subscriptions WHERE id = $1 AND partner_id = $2")
            .bind(id.to_string())
            .bind(partner.to_string())
            .fetch_optional(c)
            .await?
    });
    Ok(row.is_some())
}
