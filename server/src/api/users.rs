//! `POST /v1/users`, `GET /v1/users/{userId}`, `GET /v1/users/{userId}/accounts`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Api;
use super::error::ApiError;
use super::extract::{ApiPath, Caller, OptionalJson};
use crate::model::{Account, User, UserSource};

/// The optional body of `POST /v1/users`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    external_reference: Option<String>,
}

/// `{"data": [...]}`.
#[derive(Debug, Serialize)]
pub struct DataList<T> {
    /// The items.
    pub data: Vec<T>,
}

pub async fn create(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    OptionalJson(body): OptionalJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if !partner.direct_enabled {
        return Err(ApiError::Forbidden(
            "DIRECT_CONNECTION_NOT_ENABLED",
            "this partner is not enabled for the direct connection journey".to_owned(),
        ));
    }
    if body
        .external_reference
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 255)
    {
        return Err(ApiError::BadRequest(
            "INVALID_BODY",
            "externalReference must be 1 to 255 characters".to_owned(),
        ));
    }
    let user = api
        .store
        .create_user(
            partner.id,
            UserSource::Direct,
            body.external_reference.as_deref(),
            api.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub async fn get(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
) -> Result<Json<User>, ApiError> {
    api.store
        .user(partner.id, user_id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::user_not_found)
}

pub async fn accounts(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
) -> Result<Json<DataList<Account>>, ApiError> {
    let data = api
        .store
        .accounts(partner.id, user_id)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    Ok(Json(DataList { data }))
}
