//! `POST /v1/users`, `GET /v1/users/{userId}`, `GET /v1/users/{userId}/accounts`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, Caller, OptionalJson};
use crate::api::openapi::Problem;
use crate::model::{Account, User};
use crate::services::Services;

/// The optional body of `POST /v1/users`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    /// The partner's own reference for the user (1 to 255 characters).
    external_reference: Option<String>,
}

/// `{"data": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataList<T> {
    /// The items.
    pub data: Vec<T>,
}

/// Creates a user of the direct connection journey.
#[utoipa::path(post, path = "/v1/users", tag = "users",
    request_body(content = Option<NewUser>, description = "Optional; may be empty"),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "Malformed or invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown x-api-key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "DIRECT_CONNECTION_NOT_ENABLED", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "SANDBOX_QUOTA_EXCEEDED (sandbox servers only)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    OptionalJson(body): OptionalJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = services
        .create_user(&partner, body.external_reference.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Reads a user.
#[utoipa::path(get, path = "/v1/users/{userId}", tag = "users",
    params(("userId" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(services.user(partner.id, user_id).await?))
}

/// Lists the user's connected accounts, by accountId.
#[utoipa::path(get, path = "/v1/users/{userId}/accounts", tag = "users",
    params(("userId" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The accounts", body = DataList<Account>),
        (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn accounts(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
) -> Result<Json<DataList<Account>>, ApiError> {
    let data = services.accounts(partner.id, user_id).await?;
    Ok(Json(DataList { data }))
}
