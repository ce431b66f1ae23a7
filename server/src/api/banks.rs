//! `GET /v1/banks`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::extract::Caller;
use super::users::DataList;
use crate::services::Services;
use crate::services::banks::BankSummary;

/// Lists the banks this server fetches from, by bankId, with how each has been answering
/// in the last 15 minutes (`DEGRADED` at a quarter of its fetches failing on its side,
/// `UNAVAILABLE` when three or more and all did).
#[utoipa::path(get, path = "/v1/banks", tag = "banks",
    responses((status = 200, description = "The banks", body = DataList<BankSummary>)))]
pub async fn list(
    State(services): State<Arc<Services>>,
    Caller(_partner): Caller,
) -> Result<Json<DataList<BankSummary>>, ApiError> {
    Ok(Json(DataList {
        data: services.banks().await?,
    }))
}
