//! The OpenAPI 3.1 document of the partner API (`GET /v1/openapi.json`), generated from the
//! handlers' `#[utoipa::path]` annotations: the router and the document are built from the
//! same `routes!` calls in `api::routes`, so no route can be served undocumented.
//! The types here only describe bodies that the code writes by other means.

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

/// The document's frame: title, security, tags. Paths come from the router.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "freshet partner API",
        description = "On-demand Open Banking refreshes. Contract: shared/spec/api.md. \
                       Errors are RFC 9457 application/problem+json bodies with a stable `code`.",
        version = "1"
    ),
    modifiers(&ApiKeyAuth),
    security(("api_key" = [])),
    tags(
        (name = "users", description = "Users and their connected accounts"),
        (name = "transactions", description = "Booked transactions, newest first, in cursor pages"),
        (name = "refresh", description = "The on-demand refresh and its jobs"),
        (name = "webhooks", description = "Webhook subscriptions, the attempt log, redelivery and recovery"),
        (name = "events", description = "Server-sent events of the partner's event log"),
        (name = "banks", description = "The banks this server fetches from, and how they answer"),
        (name = "sessions", description = "The direct connection journey: a session per user, its pages, its completion"),
        (name = "sandbox", description = "Sandbox shortcuts (only on a server started with --sandbox)"),
    ),
    components(schemas(Problem))
)]
pub struct ApiDoc;

#[derive(Debug)]
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

/// An RFC 9457 problem: every 4xx and 5xx body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"type": "/problems/user-not-found", "title": "Not Found", "status": 404,
    "detail": "the userId does not exist for this partner", "code": "USER_NOT_FOUND"}))]
pub struct Problem {
    /// A relative link to `/problems/{slug}`, which describes the code.
    r#type: String,
    /// The HTTP reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// The stable code, e.g. `USER_NOT_FOUND`.
    code: String,
    /// On 5xx: the id under which the server logged the error.
    request_id: Option<String>,
}

pub use crate::model::ConsentStatusDoc;

/// One account's outcome in a refresh answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutcomeDoc {
    /// A bank fetch starts for the account.
    Triggered,
    /// Nothing is fetched; `reason` says why.
    Skipped,
}

/// Why an account was skipped.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonDoc {
    /// No valid Open Banking consent.
    AccountExpired,
    /// Every eligible account was refreshed within the last 20 minutes.
    RateLimited,
}

/// One account of `metadata.accounts`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshAccount {
    account_id: Uuid,
    outcome: OutcomeDoc,
    /// Only on `SKIPPED`.
    reason: Option<ReasonDoc>,
}

/// `metadata` of a refresh answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshMetadata {
    /// On 200: the earliest moment a new request would trigger (absent when none ever would).
    next_refresh_available_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Every connected account of the user, by accountId.
    accounts: Vec<RefreshAccount>,
}

/// The answer of `POST /v1/users/{userId}/accounts-refresh`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshResult {
    /// On 201: the job that fetches the triggered accounts.
    job_id: Option<Uuid>,
    /// `TRIGGERED` (201) or `SKIPPED` (200).
    status: OutcomeDoc,
    metadata: RefreshMetadata,
}

/// The example of a 201 from `shared/spec/api.md`.
pub fn triggered_example() -> serde_json::Value {
    serde_json::json!({
        "jobId": "0193a0e2-7c3f-7b5e-9d41-6f0e1c2a3b4d",
        "status": "TRIGGERED",
        "metadata": { "accounts": [
            { "accountId": "0193a0e2-1111-7000-8000-000000000001", "outcome": "TRIGGERED" },
            { "accountId": "0193a0e2-1111-7000-8000-000000000002", "outcome": "SKIPPED", "reason": "ACCOUNT_EXPIRED" }
        ]}
    })
}

/// A 200 where everything is rate-limited.
pub fn skipped_example() -> serde_json::Value {
    serde_json::json!({
        "status": "SKIPPED",
        "metadata": {
            "nextRefreshAvailableAt": "2026-11-26T12:10:00.000Z",
            "accounts": [
                { "accountId": "0193a0e2-1111-7000-8000-000000000001", "outcome": "SKIPPED", "reason": "RATE_LIMITED" },
                { "accountId": "0193a0e2-1111-7000-8000-000000000002", "outcome": "SKIPPED", "reason": "RATE_LIMITED" }
            ]
        }
    })
}

/// Adds the answer every authenticated operation may give — `429 RATE_LIMITED`, with its
/// `Retry-After`, `RateLimit-Policy` and `RateLimit` headers — to every operation of `doc`:
/// the limit is one rule in one place (`Caller`), so is its documentation.
pub fn document_rate_limit(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};
    let text = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    let response = ResponseBuilder::new()
        .description(
            "RATE_LIMITED: the partner sent more requests than its share of the API (a token \
             bucket per partner); wait Retry-After seconds",
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                .description(Some("Seconds until a request will be admitted"))
                .build(),
        )
        .header(
            "RateLimit-Policy",
            text("The bucket as a quota over a window, e.g. `\"partner\";q=200;w=2` (IETF httpapi draft)"),
        )
        .header(
            "RateLimit",
            text("What is left and when more will be, e.g. `\"partner\";r=0;t=1`"),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| response.clone().into());
        }
    }
}
