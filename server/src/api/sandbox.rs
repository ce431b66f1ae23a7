//! `/sandbox/v1`: shortcuts that only a sandbox server offers (`--sandbox`), scoped to the
//! caller's partner like the rest of the API. Thin handlers over `services::sandbox`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller, OptionalJson};
use super::openapi::Problem;
use super::users::DataList;
use crate::bank::sandbox::FaultKind;
use crate::model::{Account, User, UserSource};
use crate::services::Services;
use crate::services::sandbox::{AccountSpec, ClockState, FaultSpec};

/// `POST /sandbox/v1/users` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxUser {
    source: Option<UserSource>,
    external_reference: Option<String>,
}

/// Creates a user of any source (default `MARKETPLACE`).
#[utoipa::path(post, path = "/sandbox/v1/users", tag = "sandbox",
    request_body(content = Option<SandboxUser>, description = "Optional; may be empty"),
    responses((status = 201, description = "Created", body = User),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "SANDBOX_QUOTA_EXCEEDED", body = Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    OptionalJson(body): OptionalJson<SandboxUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = services
        .sandbox_user(
            partner.id,
            body.source.unwrap_or(UserSource::Marketplace),
            body.external_reference.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// The body of `POST /sandbox/v1/users/{userId}/accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectAccounts {
    accounts: Vec<AccountSpec>,
    #[serde(default)]
    initial_fetch: bool,
}

/// Connects accounts in chosen states, in one transaction, answering them in the request's order.
#[utoipa::path(post, path = "/sandbox/v1/users/{userId}/accounts", tag = "sandbox",
    params(("userId" = Uuid, Path, description = "The user")),
    request_body = ConnectAccounts,
    responses((status = 201, description = "Connected", body = DataList<Account>),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "SANDBOX_QUOTA_EXCEEDED: accounts per user, transactions per account or per partner; INCONSISTENT_BODY: a transactionCount without the lastTransactionRefreshDate it needs", body = Problem, content_type = "application/problem+json")))]
pub async fn connect_accounts(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ConnectAccounts>,
) -> Result<(StatusCode, Json<DataList<Account>>), ApiError> {
    let data = services
        .connect_accounts(partner.id, user_id, body.accounts, body.initial_fetch)
        .await?;
    Ok((StatusCode::CREATED, Json(DataList { data })))
}

/// `POST /sandbox/v1/clock` body: the offset from real time, in seconds (not cumulative:
/// posting the same offset twice leaves the clock where it was).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetClock {
    offset_seconds: i64,
}

/// Reads the caller's sandbox clock.
#[utoipa::path(get, path = "/sandbox/v1/clock", tag = "sandbox",
    responses((status = 200, description = "The clock", body = ClockState)))]
pub async fn clock(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
) -> Result<Json<ClockState>, ApiError> {
    Ok(Json(services.clock_state(partner.id)?))
}

/// Sets the caller's clock's offset from real time (other partners' time does not move).
#[utoipa::path(post, path = "/sandbox/v1/clock", tag = "sandbox", request_body = SetClock,
    responses((status = 200, description = "The clock", body = ClockState),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json")))]
pub async fn set_clock(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiJson(body): ApiJson<SetClock>,
) -> Result<Json<ClockState>, ApiError> {
    Ok(Json(
        services.set_clock_offset(partner.id, body.offset_seconds)?,
    ))
}

/// Makes the sandbox bank slow or failing for one of the caller's accounts, or for every
/// account of the caller (never another partner's). A body with neither `latencyMs` nor
/// `kind` clears that fault.
#[utoipa::path(post, path = "/sandbox/v1/bank/faults", tag = "sandbox", request_body = BankFault,
    responses((status = 204, description = "Set"),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "ACCOUNT_NOT_FOUND", body = Problem, content_type = "application/problem+json")))]
pub async fn faults(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiJson(body): ApiJson<BankFault>,
) -> Result<StatusCode, ApiError> {
    services
        .set_fault(
            partner.id,
            FaultSpec {
                account_id: body.account_id,
                latency_ms: body.latency_ms,
                jitter_percent: body.jitter_percent,
                kind: body.kind,
                retry_after_seconds: body.retry_after_seconds,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandbox/v1/bank/faults` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BankFault {
    /// One of the caller's accounts; absent: every account of the caller.
    account_id: Option<Uuid>,
    /// Added latency, in milliseconds.
    #[schema(maximum = 600_000)]
    latency_ms: Option<u64>,
    /// The latency's spread: each answer waits `latencyMs` ± up to this percentage of it.
    #[schema(maximum = 100)]
    jitter_percent: Option<u8>,
    /// `SERVER_ERROR`, `RATE_LIMITED`, `HANG` or `CONSENT_REVOKED`.
    #[schema(value_type = Option<String>)]
    kind: Option<FaultKind>,
    /// `Retry-After` for `RATE_LIMITED`, in seconds.
    retry_after_seconds: Option<u64>,
}
