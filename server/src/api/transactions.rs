//! `GET /v1/users/{userId}/transactions` and `GET /v1/users/{userId}/accounts/{accountId}/transactions`:
//! newest first by `created`; `accountId` (repeatable, first form only), `dateFrom`, `dateTo`
//! (UTC with milliseconds, on `created`), `limit` (1..500, default 100) and `cursor`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use crate::api::openapi::Problem;
use crate::model::Transaction;
use crate::services::Services;
use crate::store::{TransactionFilter, TransactionPage};

/// A page of transactions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    data: Vec<Transaction>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

fn bad(detail: String) -> ApiError {
    ApiError::BadRequest("INVALID_QUERY_PARAMETER", detail)
}

/// Exactly `2026-11-26T12:00:00.000Z`: the one form the API writes, the one it reads.
pub(super) fn parse_strict_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let shaped = b.len() == 24 && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z';
    shaped
        .then(|| DateTime::parse_from_rfc3339(text).ok())
        .flatten()
        .map(|t| t.with_timezone(&Utc))
}

/// A `limit` query parameter: 1 to 500.
pub(super) fn page_limit(value: &str) -> Result<u32, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=500).contains(n))
        .ok_or_else(|| bad("limit must be an integer from 1 to 500".to_owned()))
}

fn strict_timestamp(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_strict_timestamp(text).ok_or_else(|| {
        bad(format!(
            "{name} must be a UTC instant with milliseconds, e.g. 2026-11-26T12:00:00.000Z"
        ))
    })
}

fn encode_cursor((created, id): (DateTime<Utc>, Uuid)) -> String {
    format!("{}:{id}", created.timestamp_millis())
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    if !text.len().is_multiple_of(2) || text.len() > 200 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    let plain = String::from_utf8(bytes?).ok()?;
    let (ms, id) = plain.split_once(':')?;
    Some((
        DateTime::from_timestamp_millis(ms.parse().ok()?)?,
        Uuid::parse_str(id).ok()?,
    ))
}

fn filter(query: Option<&str>, allow_account_filter: bool) -> Result<TransactionFilter, ApiError> {
    let mut filter = TransactionFilter {
        limit: 100,
        ..TransactionFilter::default()
    };
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "accountId" if allow_account_filter => filter.account_ids.push(
                Uuid::parse_str(&value).map_err(|_| bad("accountId must be a UUID".to_owned()))?,
            ),
            "dateFrom" => filter.date_from = Some(strict_timestamp("dateFrom", &value)?),
            "dateTo" => filter.date_to = Some(strict_timestamp("dateTo", &value)?),
            "limit" => filter.limit = page_limit(&value)?,
            "cursor" => {
                filter.after = Some(
                    decode_cursor(&value)
                        .ok_or_else(|| bad("cursor is not one we gave out".to_owned()))?,
                );
            }
            other => return Err(bad(format!("unknown query parameter {other:?}"))),
        }
    }
    // A window that ends before it starts is not an error: it holds nothing (the store's
    // query finds no row in it).
    Ok(filter)
}

fn page(page: TransactionPage) -> Json<Page> {
    Json(Page {
        data: page.data,
        next_cursor: page.next.map(encode_cursor),
    })
}

/// Lists the user's transactions, newest first by `created`.
#[utoipa::path(get, path = "/v1/users/{userId}/transactions", tag = "transactions",
    params(
        ("userId" = Uuid, Path, description = "The user"),
        ("accountId" = Option<Vec<Uuid>>, Query, description = "Only these accounts (repeatable)"),
        ("dateFrom" = Option<String>, Query, description = "Created at or after, e.g. 2026-11-26T12:00:00.000Z"),
        ("dateTo" = Option<String>, Query, description = "Created at or before, e.g. 2026-11-26T12:00:00.000Z"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page", body = Page),
        (status = 400, description = "INVALID_QUERY_PARAMETER", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn of_user(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath(user_id): ApiPath<Uuid>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page>, ApiError> {
    let filter = filter(query.as_deref(), true)?;
    Ok(page(
        services.transactions(partner.id, user_id, &filter).await?,
    ))
}

/// Lists one account's transactions, newest first by `created`.
#[utoipa::path(get, path = "/v1/users/{userId}/accounts/{accountId}/transactions", tag = "transactions",
    params(
        ("userId" = Uuid, Path, description = "The user"),
        ("accountId" = Uuid, Path, description = "The account"),
        ("dateFrom" = Option<String>, Query, description = "Created at or after"),
        ("dateTo" = Option<String>, Query, description = "Created at or before"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page", body = Page),
        (status = 400, description = "INVALID_QUERY_PARAMETER", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "USER_NOT_FOUND, ACCOUNT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn of_account(
    State(services): State<Arc<Services>>,
    Caller(partner): Caller,
    ApiPath((user_id, account_id)): ApiPath<(Uuid, Uuid)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page>, ApiError> {
    let filter = filter(query.as_deref(), false)?;
    Ok(page(
        services
            .account_transactions(partner.id, user_id, account_id, filter)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_utc_with_milliseconds_is_accepted() {
        assert!(strict_timestamp("d", "2026-11-26T12:00:00.000Z").is_ok());
        for text in [
            "2026-11-26T12:00:00Z",
            "2026-11-26T12:00:00.000+00:00",
            "2026-11-26",
            "2026-11-26T12:00:00.0000Z",
            "2026-13-26T12:00:00.000Z",
        ] {
            assert!(strict_timestamp("d", text).is_err(), "{text}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_millis(1_790_000_000_123).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor((at, id))), Some((at, id)));
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor("abc"), None);
    }
}
