//! The API's one error type and its RFC 9457 `application/problem+json` body.
//! `type` is a relative link to `/problems/{slug}`, which describes the `code`.
//! Internal errors are logged with the request id, which the body repeats; their
//! details never reach the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::services::Error;
use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// Every error the partner API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no `x-api-key`, or one we do not know.
    #[error("a valid x-api-key header is required")]
    Unauthorized,
    /// 404 with a resource-specific code.
    #[error("{1}")]
    NotFound(&'static str, &'static str),
    /// 403 with a code.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// 400 with a code and what was wrong.
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// 413.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// 405.
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// 422 with a code.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    /// 429: the partner's share of the API is used up for now.
    #[error("{detail}")]
    TooManyRequests {
        /// What the body says.
        detail: String,
        /// Why, and when to come back.
        throttled: crate::services::Throttled,
    },
    /// 401 with a code other than the API key's.
    #[error("{1}")]
    Unauthenticated(&'static str, String),
    /// 501: a part of the contract that this build does not do yet.
    #[error("{0}")]
    NotImplemented(&'static str),
    /// 503: try again.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 500: logged, never detailed to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::Unauthenticated(code, _) => (StatusCode::UNAUTHORIZED, code),
            Self::NotFound(code, _) => (StatusCode::NOT_FOUND, code),
            Self::Forbidden(code, _) => (StatusCode::FORBIDDEN, code),
            Self::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::Unprocessable(code, _) => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            Self::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "NOT_IMPLEMENTED"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }

    /// 404 `USER_NOT_FOUND`, worded as D•One words it.
    pub fn user_not_found() -> Self {
        Self::NotFound(
            "USER_NOT_FOUND",
            "the userId does not exist for this partner",
        )
    }
}

/// `USER_NOT_FOUND` → `/problems/user-not-found`.
pub fn problem_slug(code: &str) -> String {
    code.to_ascii_lowercase().replace('_', "-")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let request_id = REQUEST_ID.try_with(Clone::clone).ok();
        let detail = if let Self::Internal(internal) = &self {
            tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %internal, "internal error");
            "something went wrong on our side; the request id identifies it in our logs".to_owned()
        } else {
            self.to_string()
        };
        let body = Problem {
            r#type: format!("/problems/{}", problem_slug(code)),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            request_id: if status.is_server_error() {
                request_id
            } else {
                None
            },
        };
        let json = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::TooManyRequests { throttled, .. } = &self {
            headers.insert(header::RETRY_AFTER, throttled.retry_after_seconds.into());
            for (name, value) in [
                ("ratelimit-policy", throttled.policy_header()),
                ("ratelimit", throttled.limit_header()),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let detail = e.to_string();
        match e {
            Error::UserNotFound => Self::user_not_found(),
            Error::AccountNotFound(detail) => Self::NotFound("ACCOUNT_NOT_FOUND", detail),
            Error::JobNotFound => {
                Self::NotFound("JOB_NOT_FOUND", "the jobId does not exist for this user")
            }
            Error::SubscriptionNotFound => Self::NotFound(
                "SUBSCRIPTION_NOT_FOUND",
                "the subscriptionId does not exist for this partner",
            ),
            Error::DeliveryNotFound => Self::NotFound(
                "DELIVERY_NOT_FOUND",
                "this subscription has no delivery of that eventId",
            ),
            Error::KeyNotFound => Self::NotFound("ROUTE_NOT_FOUND", "no such API key"),
            Error::MarketplaceUser => Self::Forbidden("MARKETPLACE_USER_NOT_SUPPORTED", detail),
            Error::DirectNotEnabled => Self::Forbidden("DIRECT_CONNECTION_NOT_ENABLED", detail),
            Error::IdempotencyKeyReused => Self::Unprocessable("IDEMPOTENCY_KEY_REUSED", detail),
            Error::InvalidEventType(detail) => Self::BadRequest("INVALID_EVENT_TYPE", detail),
            Error::InvalidTarget(detail) => Self::BadRequest("INVALID_WEBHOOK_TARGET", detail),
            Error::TargetNotAllowed(detail) => {
                Self::Unprocessable("WEBHOOK_TARGET_NOT_ALLOWED", detail)
            }
            Error::Invalid(detail) => Self::BadRequest("INVALID_BODY", detail),
            Error::Inconsistent(detail) => Self::Unprocessable("INCONSISTENT_BODY", detail),
            Error::SandboxOff => Self::NotFound("ROUTE_NOT_FOUND", "no such endpoint"),
            Error::NoSandboxBank => Self::NotImplemented("this server runs no sandbox bank"),
            Error::Throttled(throttled) => Self::TooManyRequests { detail, throttled },
            Error::LimitReached(limit, detail) => Self::Unprocessable(limit.code(), detail),
            Error::InvalidRedirect => Self::BadRequest("INVALID_REDIRECT_URL", detail),
            Error::SessionNotFound => Self::NotFound(
                "SESSION_NOT_FOUND",
                "the session does not exist for this partner, or it has expired",
            ),
            Error::SessionTokenInvalid => Self::Unauthenticated("SESSION_TOKEN_INVALID", detail),
            Error::BankUnavailable => {
                Self::Unavailable("the bank is unavailable; nothing was connected, try again later")
            }
            Error::NotCommitted => Self::Unavailable(
                "the refresh could not be recorded; nothing was triggered, try again",
            ),
            Error::Store(e) => Self::Internal(e.to_string()),
            Error::Internal(e) => Self::Internal(e),
        }
    }
}
