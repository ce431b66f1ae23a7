//! `GET /v1/events`: the caller's events as server-sent events, read from the event log.
//! Each carries `id:` (its log position); a client resuming with `Last-Event-ID` gets
//! exactly what it missed. A slow client is never dropped: it simply reads the log later.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;

use super::error::ApiError;
use super::extract::Caller;
use crate::services::Services;
use crate::services::events::{Grant, Resume, resume_from};

/// Streams the caller's events after `Last-Event-ID` (or from now on when absent).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "text/event-stream of the partner's events", content_type = "text/event-stream"),
              (status = 400, description = "INVALID_LAST_EVENT_ID", body = super::openapi::Problem, content_type = "application/problem+json"),
              (status = 401, description = "UNAUTHORIZED", body = super::openapi::Problem, content_type = "application/problem+json")))]
pub async fn stream(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("not text"));
    let after = match resume_from(last) {
        Some(Resume::Invalid) => {
            return Err(ApiError::BadRequest(
                "INVALID_LAST_EVENT_ID",
                "Last-Event-ID must be an id this stream sent".to_owned(),
            ));
        }
        Some(Resume::After(seq)) => Some(seq),
        None => None,
    };
    let after = services.stream_start(partner.id, after).await?;
    // The key was there: `Caller` read it. The stream lasts as long as the key does.
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let ends = Arc::clone(&services).revoked(Grant::ApiKey(key));
    Ok(crate::sse::response(
        services.event_stream(partner.id, after),
        ends,
    ))
}
