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
