//! `GET /v1/events`: the caller's events as server-sent events, read from the event log.
//! Each carries `id:` (its log position); a client resuming with `Last-Event-ID` gets
//! exactly what it missed. A slow client is never dropped: it simply reads the log later.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use uuid::Uuid;

use super::Api;
use super::error::ApiError;
use super::extract::Caller;
use crate::store::{Store, StoredEvent};

struct Cursor {
    store: Store,
    partner: Uuid,
    after: i64,
    pending: VecDeque<StoredEvent>,
    changes: tokio::sync::watch::Receiver<u64>,
}

fn sse(event: &StoredEvent) -> Event {
    let body = format!(
        r#"{{"type":{},"eventId":{},"timestamp":{},"payload":{}}}"#,
        serde_json::Value::String(event.event_type.clone()),
        serde_json::Value::String(event.id.clone()),
        serde_json::Value::String(freshet_rules::format_timestamp(event.created_at)),
        event.payload
    );
    Event::default()
        .id(event.seq.to_string())
        .event(&event.event_type)
        .data(body)
}

/// Streams the caller's events after `Last-Event-ID` (or from now on when absent).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "text/event-stream of the partner's events", content_type = "text/event-stream"),
              (status = 400, description = "INVALID_LAST_EVENT_ID", body = super::openapi::Problem, content_type = "application/problem+json"),
              (status = 401, description = "UNAUTHORIZED", body = super::openapi::Problem, content_type = "application/problem+json")))]
pub async fn stream(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = start_after(&api.store, partner.id, &headers).await?;
    Ok(partner_stream(&api.store, partner.id, after))
}

/// Where a stream starts: after `Last-Event-ID` when given (400 when malformed), else now.
pub(crate) async fn start_after(
    store: &Store,
    partner: Uuid,
    headers: &HeaderMap,
) -> Result<i64, ApiError> {
    match headers
        .get("last-event-id")
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()))
    {
        Some(Some(seq)) => Ok(seq),
        Some(None) => Err(ApiError::BadRequest(
            "INVALID_LAST_EVENT_ID",
            "Last-Event-ID must be an id this stream sent".to_owned(),
        )),
        None => Ok(store.last_event_seq(partner).await?),
    }
}

/// `partner`'s events after position `after`, as server-sent events, forever (the API's
/// stream and the portal's are this one).
pub(crate) fn partner_stream(
    store: &Store,
    partner: Uuid,
    after: i64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let cursor = Cursor {
        store: store.clone(),
        partner,
        after,
        pending: VecDeque::new(),
        changes: store.watch_events(),
    };
    let events = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                return Some((Ok(sse(&event)), c));
            }
            c.changes.mark_unchanged();
            match c.store.events_after(c.partner, c.after, 500).await {
                Ok(batch) if !batch.is_empty() => {
                    c.after = batch.last().map_or(c.after, |e| e.seq);
                    c.pending.extend(batch);
                }
                Ok(_) => {
                    // Wake on the next commit with events; poll now and then in case another
                    // process (a second server on the same database) appended them.
                    let _ = tokio::time::timeout(Duration::from_secs(1), c.changes.changed()).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the event log for SSE");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
