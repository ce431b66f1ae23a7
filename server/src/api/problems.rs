//! `/problems/{slug}`: what each error `code` means, for the `type` links of problem bodies.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::error::problem_slug;

/// Every stable code and what it means.
pub const CODES: &[(&str, &str)] = &[
    (
        "SUBSCRIPTION_LIMIT_REACHED",
        "The partner holds as many webhook subscriptions as it may (20 by default, `--max-subscriptions-per-partner`); delete one first.",
    ),
    (
        "SANDBOX_QUOTA_EXCEEDED",
        "The sandbox keeps each partner small: at most 1,000 users, 20 accounts per user, 1,000 transactions of history per account and 100,000 in all (a server's operator may set other figures).",
    ),
    (
        "RATE_LIMITED",
        "The partner sent more requests than its rate allows; wait the Retry-After seconds. The RateLimit-Policy and RateLimit headers say the quota and what is left.",
    ),
    (
        "UNAUTHORIZED",
        "The x-api-key header is missing, or the key is unknown or revoked.",
    ),
    (
        "USER_NOT_FOUND",
        "The userId does not exist for this partner (another partner's user answers the same).",
    ),
    (
        "ACCOUNT_NOT_FOUND",
        "The accountId does not exist for this user.",
    ),
    (
        "SUBSCRIPTION_NOT_FOUND",
        "The webhook subscriptionId does not exist for this partner.",
    ),
    (
        "DELIVERY_NOT_FOUND",
        "This webhook subscription has no delivery of that eventId.",
    ),
    (
        "INVALID_WEBHOOK_TARGET",
        "targetUrl must be an absolute https URL (at most 2048 characters) whose host resolves.",
    ),
    (
        "WEBHOOK_TARGET_NOT_ALLOWED",
        "targetUrl is, or resolves to, an address that is not public (loopback, private, link-local, CGNAT, multicast, reserved or cloud metadata).",
    ),
    (
        "INVALID_EVENT_TYPE",
        "eventTypes must name one or more known event types.",
    ),
    ("JOB_NOT_FOUND", "The jobId does not exist for this user."),
    (
        "INVALID_REDIRECT_URL",
        "partnerRedirectUrl must be an absolute https URL without a fragment (http://localhost or 127.0.0.1 only on a sandbox server or with --insecure-webhook-targets).",
    ),
    (
        "SESSION_NOT_FOUND",
        "The sessionId does not exist for this partner, or the session expired (30 minutes after it was created) before it was completed.",
    ),
    (
        "SESSION_TOKEN_INVALID",
        "The session termination token (Authorization: Bearer) is missing, or not one this partner was given.",
    ),
    ("ROUTE_NOT_FOUND", "No endpoint has this path."),
    (
        "METHOD_NOT_ALLOWED",
        "The endpoint exists but not with this HTTP method.",
    ),
    (
        "MARKETPLACE_USER_NOT_SUPPORTED",
        "On-demand refresh is only for users of the direct connection journey, never for marketplace-sourced users.",
    ),
    (
        "DIRECT_CONNECTION_NOT_ENABLED",
        "The partner is not enrolled in the direct connection journey.",
    ),
    (
        "IDEMPOTENCY_KEY_REUSED",
        "This Idempotency-Key was first used, within 24 hours, for another user.",
    ),
    (
        "INVALID_IDEMPOTENCY_KEY",
        "An Idempotency-Key must be 1 to 255 visible ASCII characters.",
    ),
    (
        "INVALID_LAST_EVENT_ID",
        "Last-Event-ID must be the id of an event this stream sent.",
    ),
    ("MALFORMED_JSON", "The request body is not valid JSON."),
    (
        "INVALID_BODY",
        "The JSON body has a field of the wrong type, a missing required field, or an unknown field.",
    ),
    (
        "INVALID_PATH_PARAMETER",
        "A path parameter is malformed, e.g. an id that is not a UUID.",
    ),
    (
        "INVALID_QUERY_PARAMETER",
        "A query parameter is malformed or out of range (dates must be UTC with milliseconds, e.g. 2026-11-26T12:00:00.000Z).",
    ),
    ("UNREADABLE_BODY", "The request body could not be read."),
    (
        "PAYLOAD_TOO_LARGE",
        "The request body is larger than the limit (64 KiB).",
    ),
    (
        "UNSUPPORTED_MEDIA_TYPE",
        "The request body must be sent as application/json.",
    ),
    (
        "NOT_IMPLEMENTED",
        "This part of the contract is not available in this build yet.",
    ),
    (
        "SERVICE_UNAVAILABLE",
        "The request could not be completed now and nothing was changed; try again.",
    ),
    (
        "INTERNAL",
        "Something failed on our side; the requestId of the body identifies it in our logs.",
    ),
];

/// A short HTML page about one code.
pub async fn describe(Path(slug): Path<String>) -> Response {
    match CODES.iter().find(|(code, _)| problem_slug(code) == slug) {
        Some((code, meaning)) => Html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title></head>\
             <body><h1><code>{code}</code></h1><p>{meaning}</p></body></html>"
        ))
        .into_response(),
        None => (StatusCode::NOT_FOUND, "no such problem type").into_response(),
    }
}
