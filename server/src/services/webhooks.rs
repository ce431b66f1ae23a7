//! Webhook subscriptions as a partner manages them: create, read, change (pause, resume),
//! delete, rotate the secret, send a test event, read the attempt log, redeliver one event,
//! recover failed ones. Every use case that makes a delivery due wakes the deliverer.

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::EventType;
use uuid::Uuid;

use super::{Error, Limit, Services};
use crate::model::webhooks::{Attempt, Subscription, TEST_EVENT_TYPE, WithSecret};
use crate::store::webhooks::{AttemptCursor, AttemptPoint, SubscriptionChange};
use crate::webhooks::signature::Secret;
use crate::webhooks::target::TargetError;

/// How long the secret before a rotation keeps signing.
pub const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// The longest target URL accepted.
const MAX_TARGET_LENGTH: usize = 2048;

/// What a change to a subscription may say; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct Change {
    /// A new target.
    pub target_url: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// `true` pauses (events are kept), `false` resumes (and re-enables after a 410).
    pub paused: Option<bool>,
}

/// The payload of a test event.
fn test_event_payload() -> String {
    serde_json::json!({
        "message": "A test event from freshet: your endpoint received and can verify it.",
    })
    .to_string()
}

/// One or more known event types, each once, in the order given.
fn event_types(types: Vec<String>) -> Result<Vec<String>, Error> {
    if types.is_empty() {
        return Err(Error::InvalidEventType(
            "eventTypes must name at least one event type".to_owned(),
        ));
    }
    let mut unique: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if EventType::parse(&t).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(Error::InvalidEventType(format!(
                "unknown event type {t:?}; known: {}",
                known.join(", ")
            )));
        }
        if !unique.contains(&t) {
            unique.push(t);
        }
    }
    Ok(unique)
}

fn new_secret() -> Result<Secret, Error> {
    Secret::generate().map_err(|e| Error::Internal(format!("randomness: {e}")))
}

impl Services {
    /// A target the SSRF guard lets through, normalised.
    async fn target(&self, url: &str) -> Result<String, Error> {
        if url.len() > MAX_TARGET_LENGTH {
            return Err(Error::InvalidTarget(format!(
                "targetUrl must be at most {MAX_TARGET_LENGTH} characters"
            )));
        }
        match self.webhook_targets.check(url).await {
            Ok(url) => Ok(url.to_string()),
            // Well formed, but its host is not one to send to: unresolvable, or not public.
            Err(e @ (TargetError::Forbidden(_) | TargetError::Unresolvable(_))) => {
                Err(Error::TargetNotAllowed(e.to_string()))
            }
            Err(e) => Err(Error::InvalidTarget(e.to_string())),
        }
    }

    /// Subscribes `target_url` to `event_types`; the secret is in this answer only.
    pub async fn create_subscription(
        &self,
        partner: Uuid,
        target_url: &str,
        event_types: Vec<String>,
    ) -> Result<WithSecret, Error> {
        let types = self::event_types(event_types)?;
        let url = self.target(target_url).await?;
        let secret = new_secret()?;
        let cap = self.limits.subscriptions_per_partner;
        let subscription = self
            .store
            .subscriptions()
            .create(
                partner,
                &url,
                &types,
                secret.expose(),
                self.clock.now(),
                cap,
            )
            .await?
            .ok_or_else(|| {
                Limit::Subscriptions.reached(format!(
                    "a partner may hold at most {cap} webhook subscriptions; delete one first"
                ))
            })?;
        Ok(WithSecret {
            subscription,
            secret: secret.expose().to_owned(),
        })
    }

    /// The partner's subscriptions (without secrets), oldest first.
    pub async fn subscriptions(&self, partner: Uuid) -> Result<Vec<Subscription>, Error> {
        Ok(self
            .store
            .subscriptions()
            .list(partner, self.clock.now())
            .await?)
    }

    /// One subscription.
    pub async fn subscription(&self, partner: Uuid, id: Uuid) -> Result<Subscription, Error> {
        self.store
            .subscriptions()
            .get(partner, id, self.clock.now())
            .await?
            .ok_or(Error::SubscriptionNotFound)
    }

    /// Changes the target, the event types, or pauses/resumes.
    pub async fn update_subscription(
        &self,
        partner: Uuid,
        id: Uuid,
        change: Change,
    ) -> Result<Subscription, Error> {
        let change = SubscriptionChange {
            event_types: change.event_types.map(event_types).transpose()?,
            target_url: match change.target_url {
                Some(url) => Some(self.target(&url).await?),
                None => None,
            },
            paused: change.paused,
        };
        let updated = self
            .store
            .subscriptions()
            .update(partner, id, &change, self.clock.now())
            .await?
            .ok_or(Error::SubscriptionNotFound)?;
        if change.paused == Some(false) {
            // Resumed: what waited is due now.
            self.store.want_deliveries();
        }
        Ok(updated)
    }

    /// Deletes a subscription with its deliveries and attempt log.
    pub async fn delete_subscription(&self, partner: Uuid, id: Uuid) -> Result<(), Error> {
        if self.store.subscriptions().delete(partner, id).await? {
            Ok(())
        } else {
            Err(Error::SubscriptionNotFound)
        }
    }

    /// Replaces the signing secret; the old one keeps signing beside it for 24 hours.
    pub async fn rotate_secret(&self, partner: Uuid, id: Uuid) -> Result<WithSecret, Error> {
        let secret = new_secret()?;
        let subscription = self
            .store
            .subscriptions()
            .rotate_secret(
                partner,
                id,
                secret.expose(),
                ROTATION_OVERLAP,
                self.clock.now(),
            )
            .await?
            .ok_or(Error::SubscriptionNotFound)?;
        Ok(WithSecret {
            subscription,
            secret: secret.expose().to_owned(),
        })
    }

    /// Queues a signed `v1.webhook.test` event to the subscription (whatever its event
    /// types); returns its event id.
    pub async fn send_test_event(&self, partner: Uuid, id: Uuid) -> Result<String, Error> {
        let event_id = Uuid::new_v4().to_string();
        let queued = self
            .store
            .deliveries()
            .enqueue_test(
                partner,
                id,
                &event_id,
                TEST_EVENT_TYPE,
                &test_event_payload(),
                self.clock.now(),
            )
            .await?;
        if !queued {
            return Err(Error::SubscriptionNotFound);
        }
        self.store.want_deliveries();
        Ok(event_id)
    }

    /// A page of the attempt log, newest first (optionally one event's); and the cursor of
    /// the next page.
    pub async fn attempts(
        &self,
        partner: Uuid,
        id: Uuid,
        event_id: Option<&str>,
        cursor: Option<&AttemptCursor>,
        limit: u32,
    ) -> Result<(Vec<Attempt>, Option<String>), Error> {
        self.store
            .attempts()
            .page(partner, id, event_id, cursor, limit)
            .await?
            .ok_or(Error::SubscriptionNotFound)
    }

    /// The subscription's attempts since `since`, for a chart.
    pub async fn attempt_points(
        &self,
        partner: Uuid,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<AttemptPoint>, Error> {
        Ok(self.store.attempts().points(partner, id, since).await?)
    }

    /// Queues one event again at once, whatever became of it.
    pub async fn redeliver(&self, partner: Uuid, id: Uuid, event_id: &str) -> Result<(), Error> {
        match self
            .store
            .deliveries()
            .redeliver(partner, id, event_id, self.clock.now())
            .await?
        {
            None => Err(Error::SubscriptionNotFound),
            Some(false) => Err(Error::DeliveryNotFound),
            Some(true) => {
                self.store.want_deliveries();
                Ok(())
            }
        }
    }

    /// Queues again every failed delivery of events committed since `since`; how many.
    pub async fn recover(
        &self,
        partner: Uuid,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<u64, Error> {
        let recovered = self
            .store
            .deliveries()
            .recover(partner, id, since, self.clock.now())
            .await?
            .ok_or(Error::SubscriptionNotFound)?;
        if recovered > 0 {
            self.store.want_deliveries();
        }
        Ok(recovered)
    }
}
