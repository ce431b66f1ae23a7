//! Extractors that answer bad input with our problem bodies instead of axum's plain text.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::model::{Partner, canonical_id};
use crate::services::Services;

/// The most a request body may hold.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The authenticated partner, from the `x-api-key` header.
#[derive(Clone, Debug)]
pub struct Caller(pub Partner);

impl<S> FromRequestParts<S> for Caller
where
    Arc<Services>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let services = Arc::<Services>::from_ref(state);
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let partner = services.admit(key).await?.ok_or(ApiError::Unauthorized)?;
        crate::ops::routes::record_partner(partner.id);
        Ok(Caller(partner))
    }
}

/// A path's parameters; a malformed one (a non-UUID id) is a 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Ids only in their one form: `{…}`, `urn:uuid:`, unhyphenated or upper-case
        // spellings of an id are not that id.
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await
            && let Some((name, _)) = raw
                .iter()
                .find(|(_, v)| uuid::Uuid::try_parse(v).is_ok() && canonical_id(v).is_none())
        {
            return Err(ApiError::BadRequest(
                "INVALID_PATH_PARAMETER",
                format!("{name} must be a lowercase, hyphenated UUID"),
            ));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e: PathRejection| {
                ApiError::BadRequest(
                    "INVALID_PATH_PARAMETER",
                    format!("a path parameter is malformed: {}", e.body_text()),
                )
            })
    }
}

/// A JSON body that must be present.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent (empty): then `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime_type::Essence>().ok())
        .is_some_and(|m| m.is_json());
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(BODY_LIMIT)
            } else {
                ApiError::BadRequest(
                    "UNREADABLE_BODY",
                    "the request body could not be read".to_owned(),
                )
            }
        })?;
    Ok((is_json, bytes))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest("MALFORMED_JSON", format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        // Every body of this API is an object (serde would read a struct from an array too).
        return Err(ApiError::BadRequest(
            "INVALID_BODY",
            "the body must be a JSON object".to_owned(),
        ));
    }
    integral(&mut value);
    serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest("INVALID_BODY", format!("the body does not fit: {e}")))
}

/// `129.0` is the integer 129 to JSON (and to JSON Schema, which the API's document is
/// written in), so a number without a fraction fills an integer field, however written.
fn integral(value: &mut serde_json::Value) {
    use serde_json::Value;
    /// Beyond 2^53 a double no longer holds every integer: such a number stays as it is.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                #[allow(clippy::cast_possible_truncation)] // whole and within ±2^53
                let whole = f as i64;
                *value = Value::from(whole);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(fields) => fields.values_mut().for_each(integral),
        _ => {}
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = body_bytes(req, state).await?;
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&bytes).map(Self)
    }
}

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&bytes).map(Self)
    }
}

/// A small parser for `Content-Type` values: `application/json`, `application/*+json`,
/// with or without parameters.
mod mime_type {
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s.split(';').next().ok_or(())?.trim().to_ascii_lowercase();
            Ok(Self(essence))
        }
    }

    impl Essence {
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}
