//! A partner's event stream as server-sent events, for both fronts (`GET /v1/events` and
//! the portal's `/portal/events`): each event's `id:` is its log position, so a client
//! resuming with `Last-Event-ID` gets exactly what it missed.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use crate::services::events::envelope;
use crate::store::StoredEvent;

/// `events` as an SSE response, with a keep-alive comment every 15 seconds, until `ends`
/// resolves (the grant it was opened with is revoked): then the response ends.
pub fn response(
    events: impl Stream<Item = StoredEvent> + Send + 'static,
    ends: impl std::future::Future<Output = ()> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Counted while the response's stream lives (dropped when the client goes or it ends).
    let client = crate::ops::metrics::SseClient::open();
    let events = events.take_until(ends).map(move |e| {
        let _counted = &client;
        Ok(Event::default()
            .id(e.seq.to_string())
            .event(&e.event_type)
            .data(envelope(
                &e.event_type,
                &e.id,
                None,
                e.created_at,
                &e.payload,
            )))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
