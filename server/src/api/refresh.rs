//! `POST /v1/users/{userId}/accounts-refresh` and `GET .../accounts-refresh/{jobId}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::Api;
use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use crate::api::openapi::{Problem, RefreshResult};
use crate::model::Job;
use crate::refresh::RefreshCommand;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "INVALID_IDEMPOTENCY_KEY",
                "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            )
        })
}

/// Asks for fresh data now. Each account is `TRIGGERED`, or `SKIPPED` with `ACCOUNT_EXPIRED`
/// or `RATE_LIMITED`; if any eligible account is stale, all eligible ones trigger.
#[utoipa::path(post, path = "/v1/users/{userId}/accounts-refresh", tag = "refresh",
    params(
        ("userId" = Uuid, Path, description = "The user"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours"),
    ),
    responses(
        (status = 201, description = "At least one account triggered: a job was created", body = RefreshResult,
            example = json!(crate::api::openapi::triggered_example())),
        (status = 200, description = "Every account skipped (or none connected)", body = RefreshResult,
            headers(("Retry-After" = u64, description = "Seconds until nextRefreshAvailableAt")),
            example = json!(crate::api::openapi::skipped_example())),
        (status = 400, description = "INVALID_PATH_PARAMETER, INVALID_IDEMPOTENCY_KEY", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "MARKETPLACE_USER_NOT_SUPPORTED, DIRECT_CONNECTION_NOT_ENABLED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn trigger(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let answer = api
        .refresh
        .refresh(RefreshCommand {
            partner,
            user_id,
            idempotency_key,
        })
        .await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer.body,
    )
        .into_response();
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(response)
}

/// Reads a refresh job and each of its accounts.
#[utoipa::path(get, path = "/v1/users/{userId}/accounts-refresh/{jobId}", tag = "refresh",
    params(("userId" = Uuid, Path, description = "The user"), ("jobId" = Uuid, Path, description = "The job")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "USER_NOT_FOUND, JOB_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn job(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    ApiPath((user_id, job_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Job>, ApiError> {
    if api.store.user(partner.id, user_id).await?.is_none() {
        return Err(ApiError::user_not_found());
    }
    api.store
        .job(partner.id, user_id, job_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound(
            "JOB_NOT_FOUND",
            "the jobId does not exist for this user",
        ))
}
