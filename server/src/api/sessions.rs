//! The direct connection journey's API: `POST /v1/sessions`, `GET /v1/sessions/{sessionId}`,
//! `PUT /v1/sessions/completed`. The pages the user sees are `journey.rs`'s.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::Problem;
use crate::services::Services;
use crate::services::journey::{NewSession, Session};

/// The body of `POST /v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionRequest {
    /// The user to connect (a user of the direct journey).
    user_id: Uuid,
    /// Where the user is sent back: an absolute https URL.
    partner_redirect_url: String,
    /// The partner's own reference (1 to 256 characters), returned unchanged.
    #[serde(default)]
    correlation_id: Option<String>,
}

/// Creates a session: send the user to its `connectionUrl` (valid 30 minutes).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = SessionRequest,
    responses(
        (status = 201, description = "Created, with its URLs (shown only here)", body = Session),
        (status = 400, description = "INVALID_REDIRECT_URL, INVALID_BODY", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "MARKETPLACE_USER_NOT_SUPPORTED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let session = services
        .create_session(
            &partner,
            NewSession {
                user_id: body.user_id,
                partner_redirect_url: body.partner_redirect_url,
                correlation_id: body.correlation_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Reads a session (`EXPIRED` once its 30 minutes pass uncompleted).
#[utoipa::path(get, path = "/v1/sessions/{sessionId}", tag = "sessions",
    params(("sessionId" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "SESSION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(services.session_of(partner.id, id).await?))
}

/// Completes the session the user came back with: `Authorization: Bearer
/// <sessionTerminationToken>` (or the bare token). Again: the same answer.
#[utoipa::path(put, path = "/v1/sessions/completed", tag = "sessions",
    params(("Authorization" = String, Header, description = "Bearer <sessionTerminationToken>")),
    responses(
        (status = 200, description = "Completed", body = Session),
        (status = 401, description = "SESSION_TOKEN_INVALID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "SESSION_NOT_FOUND (expired)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn complete(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    headers: HeaderMap,
) -> Result<Json<Session>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .filter(|t| !t.is_empty())
        .ok_or(crate::services::Error::SessionTokenInvalid)?;
    Ok(Json(services.complete_session(partner.id, token).await?))
}
