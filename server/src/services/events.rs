//! The event log as partners read it: the one envelope every event travels in (server-sent
//! events and webhook bodies alike; it sits in `model` so that the deliverer shares it
//! without depending on the use cases), and a partner's events as an endless stream, woken
//! by each commit that appends events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use uuid::Uuid;

use super::{Error, Services};
use crate::store::{Store, StoredEvent};

pub use crate::model::envelope;

/// Where a stream starts when the client sent no `Last-Event-ID`, or a malformed one.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// After this log position.
    After(i64),
    /// The client's `Last-Event-ID` is not a position we sent.
    Invalid,
}

/// A `Last-Event-ID` header's value, read.
pub fn resume_from(last_event_id: Option<&str>) -> Option<Resume> {
    last_event_id.map(|v| match v.trim().parse::<i64>() {
        Ok(seq) => Resume::After(seq),
        Err(_) => Resume::Invalid,
    })
}

/// What a stream was opened with: it ends when that no longer holds.
#[derive(Clone, Debug)]
pub enum Grant {
    /// An API key (`GET /v1/events`).
    ApiKey(String),
    /// A portal session's token (`/portal/events`).
    Session(String),
}

/// How often an open stream checks its grant when nothing here revoked anything: for a
/// session's expiry, and for revocations made by another process (for API keys, once this
/// process's key cache has let go of the key: within its 30 s).
const RECHECK: Duration = Duration::from_secs(1);

struct Cursor {
    store: Store,
    partner: Uuid,
    after: i64,
    pending: VecDeque<StoredEvent>,
    changes: tokio::sync::watch::Receiver<u64>,
}

impl Services {
    /// The position a new stream of `partner` starts after: `after` when given, else the
    /// newest event now.
    pub async fn stream_start(&self, partner: Uuid, after: Option<i64>) -> Result<i64, Error> {
        match after {
            Some(seq) => Ok(seq),
            None => Ok(self.store.events().last_seq(partner).await?),
        }
    }

    /// Resolves once `grant` no longer holds: checked at once on every revocation made
    /// here (a key revoked, a session ended), and every second. A failure to check is not
    /// a revocation: the stream goes on.
    pub async fn revoked(self: Arc<Self>, grant: Grant) {
        let mut revocations = self.revocations.subscribe();
        loop {
            let _ = tokio::time::timeout(RECHECK, revocations.changed()).await;
            let gone = match &grant {
                Grant::ApiKey(key) => matches!(self.partner_by_key(key).await, Ok(None)),
                Grant::Session(token) => matches!(self.session(token).await, Ok(None)),
            };
            if gone {
                return;
            }
        }
    }

    /// Tells open streams that a grant may have ended.
    pub(super) fn revoked_something(&self) {
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// `partner`'s events after position `after`, forever. A slow reader is never dropped:
    /// it simply reads the log later.
    pub fn event_stream(
        &self,
        partner: Uuid,
        after: i64,
    ) -> impl Stream<Item = StoredEvent> + use<> {
        let cursor = Cursor {
            store: self.store.clone(),
            partner,
            after,
            pending: VecDeque::new(),
            changes: self.store.watch_events(),
        };
        futures_util::stream::unfold(cursor, |mut c| async move {
            loop {
                if let Some(event) = c.pending.pop_front() {
                    return Some((event, c));
                }
                c.changes.mark_unchanged();
                match c.store.events().after(c.partner, c.after, 500).await {
                    Ok(batch) if !batch.is_empty() => {
                        c.after = batch.last().map_or(c.after, |e| e.seq);
                        c.pending.extend(batch);
                    }
                    Ok(_) => {
                        // Wake on the next commit with events; poll now and then in case another
                        // process (a second server on the same database) appended them.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), c.changes.changed()).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the event log for a stream");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn the_envelope_is_the_same_json_with_or_without_a_subscription() {
        let at = DateTime::from_timestamp_millis(1_790_000_000_123).unwrap_or_default();
        let sse = envelope("v1.x", "e1", None, at, r#"{"a":1}"#);
        let hook = envelope("v1.x", "e1", Some("s1"), at, r#"{"a":1}"#);
        let sse: serde_json::Value = serde_json::from_str(&sse).unwrap_or_default();
        let hook: serde_json::Value = serde_json::from_str(&hook).unwrap_or_default();
        assert_eq!(sse["type"], "v1.x");
        assert_eq!(sse["payload"]["a"], 1);
        assert_eq!(sse.get("subscriptionId"), None);
        assert_eq!(hook["subscriptionId"], "s1");
        assert_eq!(hook["timestamp"], sse["timestamp"]);
    }

    #[test]
    fn the_portal_reads_every_event_type_of_the_stream_typed() {
        let at = DateTime::from_timestamp_millis(1_790_000_000_123).unwrap_or_default();
        for t in freshet_rules::EventType::FETCHES {
            let payload = r#"{"userId":"u1","accountId":"a1","jobId":"j1","newTransactions":3}"#;
            let data = envelope(t.as_str(), "e1", None, at, payload);
            let event: app::model::LiveEvent =
                serde_json::from_str(&data).unwrap_or_else(|e| panic!("{t:?}: {e}"));
            assert_eq!(event.event_type, t);
            assert_eq!(event.payload.account_id, "a1");
            assert_eq!(event.payload.job_id.as_deref(), Some("j1"));
        }
        let scheduled = envelope(
            "v1.account_transactions.scheduled_refresh.succeeded",
            "e2",
            None,
            at,
            r#"{"userId":"u1","accountId":"a1"}"#,
        );
        let event: app::model::LiveEvent =
            serde_json::from_str(&scheduled).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            event.payload.job_id, None,
            "only on-demand events name their job"
        );
    }
}
