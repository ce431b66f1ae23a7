//! `/v1/webhooks/subscriptions`: create, list, read, change, delete, rotate the secret, send
//! a test event, read the attempt log, redeliver one event, recover failed ones since a time.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::Problem;
use super::transactions::{page_limit, parse_strict_timestamp};
use super::users::DataList;
use crate::model::webhooks::{Attempt, Subscription, WithSecret};
use crate::services::Services;
use crate::services::webhooks::Change;
use crate::store::webhooks::AttemptCursor;

/// The body of `POST /v1/webhooks/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSubscription {
    /// An https URL whose host resolves to public addresses only.
    target_url: String,
    /// One or more event types.
    event_types: Vec<String>,
}

/// The body of `PATCH /v1/webhooks/subscriptions/{subscriptionId}`: any of the fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionPatch {
    /// A new target.
    target_url: Option<String>,
    /// New event types.
    event_types: Option<Vec<String>>,
    /// `true` pauses (events are kept), `false` resumes (and re-enables after a 410).
    paused: Option<bool>,
}

/// The body of `POST .../recover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recover {
    /// Redeliver every failed event committed at or after this instant.
    since: String,
}

/// A queued delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The event (and delivery) id.
    event_id: String,
}

/// How many failed deliveries were queued again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    /// Their number.
    recovered: u64,
}

/// A page of the attempt log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptPage {
    /// Attempts, newest first.
    data: Vec<Attempt>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// Subscribes a URL to event types. The secret is in this answer only.
#[utoipa::path(post, path = "/v1/webhooks/subscriptions", tag = "webhooks",
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Created; keep the secret", body = WithSecret),
        (status = 400, description = "INVALID_WEBHOOK_TARGET, INVALID_EVENT_TYPE, INVALID_BODY", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "SUBSCRIPTION_LIMIT_REACHED: the partner holds as many subscriptions as it may; WEBHOOK_TARGET_NOT_ALLOWED: the target's host does not resolve, or resolves to a non-public address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiJson(body): ApiJson<NewSubscription>,
) -> Result<(StatusCode, Json<WithSecret>), ApiError> {
    let created = services
        .create_subscription(partner.id, &body.target_url, body.event_types)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists the partner's subscriptions (without secrets).
#[utoipa::path(get, path = "/v1/webhooks/subscriptions", tag = "webhooks",
    responses((status = 200, description = "The subscriptions", body = DataList<Subscription>)))]
pub async fn list(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
) -> Result<Json<DataList<Subscription>>, ApiError> {
    let data = services.subscriptions(partner.id).await?;
    Ok(Json(DataList { data }))
}

/// Reads a subscription.
#[utoipa::path(get, path = "/v1/webhooks/subscriptions/{subscriptionId}", tag = "webhooks",
    params(("subscriptionId" = Uuid, Path, description = "The subscription")),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(services.subscription(partner.id, id).await?))
}

/// Changes the target, the event types, or pauses/resumes.
#[utoipa::path(patch, path = "/v1/webhooks/subscriptions/{subscriptionId}", tag = "webhooks",
    params(("subscriptionId" = Uuid, Path, description = "The subscription")),
    request_body = SubscriptionPatch,
    responses(
        (status = 200, description = "The subscription as changed", body = Subscription),
        (status = 400, description = "INVALID_WEBHOOK_TARGET, INVALID_EVENT_TYPE, INVALID_BODY", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "WEBHOOK_TARGET_NOT_ALLOWED: the target's host does not resolve, or resolves to a non-public address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SubscriptionPatch>,
) -> Result<Json<Subscription>, ApiError> {
    let change = Change {
        target_url: body.target_url,
        event_types: body.event_types,
        paused: body.paused,
    };
    Ok(Json(
        services.update_subscription(partner.id, id, change).await?,
    ))
}

/// Deletes a subscription, its deliveries and its attempt log.
#[utoipa::path(delete, path = "/v1/webhooks/subscriptions/{subscriptionId}", tag = "webhooks",
    params(("subscriptionId" = Uuid, Path, description = "The subscription")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    services.delete_subscription(partner.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the signing secret; the old one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/subscriptions/{subscriptionId}/rotate-secret", tag = "webhooks",
    params(("subscriptionId" = Uuid, Path, description = "The subscription")),
    responses(
        (status = 200, description = "The new secret (shown once)", body = WithSecret),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<WithSecret>, ApiError> {
    Ok(Json(services.rotate_secret(partner.id, id).await?))
}

/// Sends a signed `v1.webhook.test` event to the subscription (whatever its event types).
#[utoipa::path(post, path = "/v1/webhooks/subscriptions/{subscriptionId}/test", tag = "webhooks",
    params(("subscriptionId" = Uuid, Path, description = "The subscription")),
    responses(
        (status = 202, description = "Queued; see the attempt log", body = Queued),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let event_id = services.send_test_event(partner.id, id).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { event_id })))
}

/// The attempt log, newest first.
#[utoipa::path(get, path = "/v1/webhooks/subscriptions/{subscriptionId}/deliveries", tag = "webhooks",
    params(
        ("subscriptionId" = Uuid, Path, description = "The subscription"),
        ("eventId" = Option<String>, Query, description = "Only this event's attempts"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Attempts", body = AttemptPage),
        (status = 400, description = "INVALID_QUERY_PARAMETER", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
    RawQuery(query): RawQuery,
) -> Result<Json<AttemptPage>, ApiError> {
    let bad = |detail: String| ApiError::BadRequest("INVALID_QUERY_PARAMETER", detail);
    let (mut event_id, mut limit, mut cursor) = (None, 100_u32, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "eventId" => event_id = Some(value.into_owned()),
            "limit" => limit = page_limit(&value)?,
            "cursor" => {
                cursor = Some(
                    AttemptCursor::parse(&value)
                        .ok_or_else(|| bad("cursor is not one we gave out".to_owned()))?,
                );
            }
            other => return Err(bad(format!("unknown query parameter {other:?}"))),
        }
    }
    let (data, next_cursor) = services
        .attempts(partner.id, id, event_id.as_deref(), cursor.as_ref(), limit)
        .await?;
    Ok(Json(AttemptPage { data, next_cursor }))
}

/// Queues one event again at once, whatever became of it.
#[utoipa::path(post, path = "/v1/webhooks/subscriptions/{subscriptionId}/deliveries/{eventId}/redeliver", tag = "webhooks",
    params(
        ("subscriptionId" = Uuid, Path, description = "The subscription"),
        ("eventId" = String, Path, description = "The event"),
    ),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND, DELIVERY_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath((id, event_id)): ApiPath<(Uuid, String)>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    services.redeliver(partner.id, id, &event_id).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { event_id })))
}

/// Queues again every failed delivery of events committed since a time.
#[utoipa::path(post, path = "/v1/webhooks/subscriptions/{subscriptionId}/recover", tag = "webhooks",
    params(("subscriptionId" = Uuid, Path, description = "The subscription")),
    request_body = Recover,
    responses(
        (status = 202, description = "Queued", body = Recovered),
        (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "SUBSCRIPTION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn recover(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Recover>,
) -> Result<(StatusCode, Json<Recovered>), ApiError> {
    let since = parse_strict_timestamp(&body.since).ok_or_else(|| {
        ApiError::BadRequest(
            "INVALID_BODY",
            "since must be a UTC instant with milliseconds, e.g. 2026-11-26T12:00:00.000Z"
                .to_owned(),
        )
    })?;
    let recovered = services.recover(partner.id, id, since).await?;
    Ok((StatusCode::ACCEPTED, Json(Recovered { recovered })))
}
