//! `/sandbox/v1`: shortcuts that only a sandbox server offers (`--sandbox`), scoped to the
//! caller's partner like the rest of the API.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::ConsentStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Api;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller, OptionalJson};
use super::openapi::Problem;
use super::users::DataList;
use crate::bank::sandbox::{Fault, FaultKind};
use crate::model::{Account, User, UserSource, ts};
use crate::sandbox::{PERSONAS, history};
use crate::store::NewAccount;

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
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    OptionalJson(body): OptionalJson<SandboxUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let source = body.source.unwrap_or(UserSource::Marketplace);
    let user = api
        .store
        .create_user(
            partner.id,
            source,
            body.external_reference.as_deref(),
            api.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One account of `POST /sandbox/v1/users/{userId}/accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxAccount {
    #[schema(value_type = Option<crate::api::openapi::ConsentStatusDoc>)]
    consent_status: Option<ConsentStatus>,
    consent_expires_at: Option<DateTime<Utc>>,
    last_transaction_refresh_date: Option<DateTime<Utc>>,
    provider_name: Option<String>,
    account_type: Option<String>,
    currency: Option<String>,
    balance: Option<String>,
    persona: Option<String>,
    transaction_count: Option<u32>,
}

/// The body of `POST /sandbox/v1/users/{userId}/accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectAccounts {
    accounts: Vec<SandboxAccount>,
    #[serde(default)]
    initial_fetch: bool,
}

const PROVIDERS: &[&str] = &["Monzo", "Starling", "Barclays", "HSBC", "Lloyds", "NatWest"];
const MAX_ACCOUNTS: usize = 50;
const MAX_TRANSACTIONS: u32 = 1000;

fn new_account(i: usize, a: SandboxAccount, seed: u64) -> Result<NewAccount, ApiError> {
    let bad = |detail: String| ApiError::BadRequest("INVALID_BODY", detail);
    let persona = a.persona.unwrap_or_else(|| "salaried".to_owned());
    if !PERSONAS.contains(&persona.as_str()) {
        return Err(bad(format!(
            "accounts[{i}].persona must be one of {PERSONAS:?}"
        )));
    }
    let count = a.transaction_count.unwrap_or(0);
    if count > MAX_TRANSACTIONS {
        return Err(bad(format!(
            "accounts[{i}].transactionCount must be at most {MAX_TRANSACTIONS}"
        )));
    }
    let history = match a.last_transaction_refresh_date {
        Some(at) => history(&persona, seed, count as usize, at),
        None if count > 0 => {
            return Err(bad(format!(
                "accounts[{i}].transactionCount needs lastTransactionRefreshDate (transactions exist once ingested)"
            )));
        }
        None => Vec::new(),
    };
    Ok(NewAccount {
        provider_name: a
            .provider_name
            .unwrap_or_else(|| PROVIDERS[i % PROVIDERS.len()].to_owned()),
        account_type: a.account_type.unwrap_or_else(|| "CURRENT".to_owned()),
        currency: a.currency.unwrap_or_else(|| "GBP".to_owned()),
        balance: a.balance.unwrap_or_else(|| "1250.00".to_owned()),
        consent_status: a.consent_status.unwrap_or(ConsentStatus::Active),
        consent_expires_at: a.consent_expires_at,
        last_transaction_refresh_date: a.last_transaction_refresh_date,
        persona,
        history,
    })
}

/// Connects accounts in chosen states, in one transaction, answering them in the request's order.
#[utoipa::path(post, path = "/sandbox/v1/users/{userId}/accounts", tag = "sandbox",
    params(("userId" = Uuid, Path, description = "The user")),
    request_body = ConnectAccounts,
    responses((status = 201, description = "Connected", body = DataList<Account>),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json")))]
pub async fn connect_accounts(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ConnectAccounts>,
) -> Result<(StatusCode, Json<DataList<Account>>), ApiError> {
    if body.accounts.is_empty() || body.accounts.len() > MAX_ACCOUNTS {
        return Err(ApiError::BadRequest(
            "INVALID_BODY",
            format!("accounts must hold 1 to {MAX_ACCOUNTS} items"),
        ));
    }
    let seed = u64::from_le_bytes(user_id.as_bytes()[..8].try_into().unwrap_or_default());
    let initial_fetch = body.initial_fetch;
    let accounts = body
        .accounts
        .into_iter()
        .enumerate()
        .map(|(i, a)| new_account(i, a, seed.wrapping_add(i as u64)))
        .collect::<Result<Vec<_>, _>>()?;
    let data = api
        .store
        .connect_accounts(
            partner.id,
            user_id,
            &accounts,
            initial_fetch,
            api.clock.now(),
        )
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    Ok((StatusCode::CREATED, Json(DataList { data })))
}

/// The sandbox clock.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockState {
    #[serde(serialize_with = "ts")]
    now: DateTime<Utc>,
    offset_seconds: i64,
}

/// `POST /sandbox/v1/clock` body: the offset from real time, in seconds (not cumulative:
/// posting the same offset twice leaves the clock where it was).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetClock {
    offset_seconds: i64,
}

/// Reads the sandbox clock.
#[utoipa::path(get, path = "/sandbox/v1/clock", tag = "sandbox",
    responses((status = 200, description = "The clock", body = ClockState)))]
pub async fn clock(State(api): State<Arc<Api>>, Caller(_): Caller) -> Json<ClockState> {
    Json(ClockState {
        now: api.clock.now(),
        offset_seconds: api.clock.offset().num_seconds(),
    })
}

/// Sets the clock's offset from real time.
#[utoipa::path(post, path = "/sandbox/v1/clock", tag = "sandbox", request_body = SetClock,
    responses((status = 200, description = "The clock", body = ClockState),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json")))]
pub async fn set_clock(
    State(api): State<Arc<Api>>,
    Caller(_): Caller,
    ApiJson(body): ApiJson<SetClock>,
) -> Result<Json<ClockState>, ApiError> {
    let offset = TimeDelta::try_seconds(body.offset_seconds)
        .filter(|d| d.num_days().abs() <= 3650)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "INVALID_BODY",
                "offsetSeconds must be within ten years".to_owned(),
            )
        })?;
    api.clock.set_offset(offset);
    Ok(Json(ClockState {
        now: api.clock.now(),
        offset_seconds: offset.num_seconds(),
    }))
}

/// Makes the sandbox bank slow or failing for one of the caller's accounts, or for every
/// account (the sandbox bank is shared by the server's partners). A body with neither
/// `latencyMs` nor `kind` clears the fault.
#[utoipa::path(post, path = "/sandbox/v1/bank/faults", tag = "sandbox", request_body = BankFault,
    responses((status = 204, description = "Set"),
              (status = 400, description = "INVALID_BODY", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "ACCOUNT_NOT_FOUND", body = Problem, content_type = "application/problem+json")))]
pub async fn faults(
    State(api): State<Arc<Api>>,
    Caller(partner): Caller,
    ApiJson(body): ApiJson<BankFault>,
) -> Result<StatusCode, ApiError> {
    let bank = api
        .sandbox_bank
        .as_ref()
        .ok_or(ApiError::NotImplemented("this server runs no sandbox bank"))?;
    if body.latency_ms.is_some_and(|ms| ms > 600_000) {
        return Err(ApiError::BadRequest(
            "INVALID_BODY",
            "latencyMs must be at most 600000".to_owned(),
        ));
    }
    if let Some(account) = body.account_id
        && !api.store.account_of_partner(partner.id, account).await?
    {
        return Err(ApiError::NotFound(
            "ACCOUNT_NOT_FOUND",
            "the accountId does not exist for this partner",
        ));
    }
    bank.set_fault(Fault {
        account_id: body.account_id.map(|a| a.to_string()),
        latency_ms: body.latency_ms,
        kind: body.kind,
        retry_after_seconds: body.retry_after_seconds,
    });
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandbox/v1/bank/faults` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BankFault {
    /// One of the caller's accounts; absent: every account.
    account_id: Option<Uuid>,
    /// Added latency, in milliseconds.
    #[schema(maximum = 600_000)]
    latency_ms: Option<u64>,
    /// `SERVER_ERROR`, `RATE_LIMITED`, `HANG` or `CONSENT_REVOKED`.
    #[schema(value_type = Option<String>)]
    kind: Option<FaultKind>,
    /// `Retry-After` for `RATE_LIMITED`, in seconds.
    retry_after_seconds: Option<u64>,
}
