//! `POST /v1/users/{userId}/accounts-refresh` and `GET .../accounts-refresh/{jobId}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use chrono::{DateTime, Utc};
use freshet_rules::{Outcome, SkipReason, Status};
use serde::Serialize;

use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use crate::api::openapi::{Problem, RefreshResult};
use crate::model::{Job, ts_opt};
use crate::services::refresh::Idempotency;
use crate::services::{RefreshAnswer, RefreshCommand, RefreshOutcome, Services};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<Uuid>,
    status: Status,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    next_refresh_available_at: Option<DateTime<Utc>>,
    accounts: Vec<AccountOutcome<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountOutcome<'a> {
    account_id: &'a str,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<SkipReason>,
}

/// The D•One response shape: `jobId` (on 201), `status`, `metadata.accounts[]`. These bytes
/// are also what an `Idempotency-Key` replay sends again.
fn render(outcome: &RefreshOutcome) -> String {
    let body = Body {
        job_id: outcome.job_id,
        status: outcome.status,
        metadata: Metadata {
            next_refresh_available_at: outcome.next_refresh_available_at,
            accounts: outcome
                .accounts
                .iter()
                .map(|a| AccountOutcome {
                    account_id: &a.account_id,
                    outcome: a.verdict.outcome(),
                    reason: a.verdict.reason(),
                })
                .collect(),
        },
    };
    // Serializing plain strings, enums and UUIDs cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

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
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency { key, render });
    let answer = services
        .refresh(RefreshCommand {
            partner,
            user_id,
            idempotency,
        })
        .await?;
    let (status, body, retry_after) = match answer {
        RefreshAnswer::Decided(outcome) => {
            (outcome.http_status(), render(&outcome), outcome.retry_after)
        }
        RefreshAnswer::Replayed(kept) => (kept.status, kept.body, kept.retry_after),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(seconds) = retry_after {
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
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath((user_id, job_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(services.job(partner.id, user_id, job_id).await?))
}
