//! The sandbox bank: a real HTTP service in the shape of the UK Open Banking Account and
//! Transaction API (`GET /open-banking/v3.1/aisp/accounts/{AccountId}/transactions`, paged,
//! the consent as the bearer), so that freshet's connector talks to it exactly as it would
//! to a bank. It keeps no data: each account's transactions follow from its persona and its
//! id, on a schedule anchored at a fixed origin, so new ones appear as the (sandbox) clock
//! moves and a restart changes nothing. Only faults, set by tests and demos, live in memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// Transactions are served from at most this far back (like real banks' history limits).
pub const HISTORY_DAYS: i64 = 90;
/// Transactions booked within this many hours of the bank's now are still pending.
pub const PENDING_HOURS: i64 = 24;
/// Transactions per page.
pub const PAGE_SIZE: usize = 100;

pub mod authz;
pub mod in_process;
pub mod oauth;
pub mod personas;

pub use personas::{BankTransaction, PERSONAS, history};

/// The consent id freshet presents for a sandbox account: it names the persona and the
/// partner (whose sandbox faults apply), so that the bank needs no registry. Only this
/// bank reads it.
pub fn consent_id(persona: &str, partner: &str, account_id: &str) -> String {
    format!("sbx.{persona}.{partner}.{account_id}")
}

/// (persona, partner, account) of a consent id.
fn decode_consent(bearer: &str) -> Option<(&str, &str, &str)> {
    let mut parts = bearer.strip_prefix("sbx.")?.splitn(3, '.');
    let (persona, partner, account) = (parts.next()?, parts.next()?, parts.next()?);
    PERSONAS
        .contains(&persona)
        .then_some((persona, partner, account))
}

/// What a faulty bank does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FaultKind {
    /// Answers 503.
    ServerError,
    /// Answers 429 with `Retry-After`.
    RateLimited,
    /// Never answers (longer than any client timeout).
    Hang,
    /// Answers 403: the user revoked the consent.
    ConsentRevoked,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::ServerError,
        Self::RateLimited,
        Self::Hang,
        Self::ConsentRevoked,
    ];

    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerError => "SERVER_ERROR",
            Self::RateLimited => "RATE_LIMITED",
            Self::Hang => "HANG",
            Self::ConsentRevoked => "CONSENT_REVOKED",
        }
    }
}

/// `POST /faults`: make one account (or every account) slow or failing; all fields optional.
/// An empty body clears that account's fault (or all faults).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// The account; absent: every account.
    pub account_id: Option<String>,
    /// Added latency before answering, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Spread of the latency, in percent: each answer waits `latencyMs` ± up to this share
    /// (as real banks' answers vary), e.g. 30.
    pub jitter_percent: Option<u8>,
    /// How to fail; absent: answer normally (after the latency).
    pub kind: Option<FaultKind>,
    /// `Retry-After` seconds for `RATE_LIMITED`.
    pub retry_after_seconds: Option<u64>,
}

/// Whose accounts a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultScope {
    /// Every account of the bank.
    Everyone,
    /// Every account of one partner (its id, as the consents name it).
    Partner(String),
    /// One account (the bank's id for it), set through the bank's own `/faults`.
    Account(String),
    /// One account of one partner, set through that partner's sandbox API.
    PartnerAccount {
        /// The partner, as the consents name it.
        partner: String,
        /// The bank's id for the account.
        account: String,
    },
}

/// The bank's state: the clock it lives on, and its faults.
#[derive(Debug)]
pub struct SandboxBank {
    clock: Arc<Clock>,
    faults: RwLock<HashMap<FaultScope, Fault>>,
    /// Its authorization server: clients, consents, codes and tokens.
    pub authority: oauth::Authority,
    issuer: RwLock<Option<String>>,
}

impl SandboxBank {
    /// A healthy bank on `clock`.
    pub fn new(clock: Arc<Clock>) -> Self {
        Self {
            clock,
            faults: RwLock::new(HashMap::new()),
            authority: oauth::Authority::default(),
            issuer: RwLock::new(None),
        }
    }

    /// Its base URL as clients reach it (`http://127.0.0.1:4010`), once it is bound.
    pub fn set_issuer(&self, base: &str) {
        if let Ok(mut issuer) = self.issuer.write() {
            *issuer = Some(base.trim_end_matches('/').to_owned());
        }
    }

    /// Its base URL, when set.
    pub fn issuer(&self) -> Option<String> {
        self.issuer.read().ok().and_then(|i| i.clone())
    }

    /// Sets (or, with neither latency nor kind, clears) a fault of the account it names, or
    /// of every account: what the bank's own `POST /faults` does.
    pub fn set_fault(&self, fault: Fault) {
        let scope = fault
            .account_id
            .clone()
            .map_or(FaultScope::Everyone, FaultScope::Account);
        self.set_scoped_fault(scope, fault);
    }

    /// Sets the fault of `scope`, or (with neither latency nor kind) clears it. Clearing
    /// everyone's clears every fault; clearing a partner's clears all of that partner's
    /// (its accounts' too) and no one else's.
    pub fn set_scoped_fault(&self, scope: FaultScope, fault: Fault) {
        if let Ok(mut faults) = self.faults.write() {
            if fault.latency_ms.is_some() || fault.kind.is_some() {
                faults.insert(scope, fault);
                return;
            }
            match &scope {
                FaultScope::Everyone => faults.clear(),
                FaultScope::Partner(p) => faults.retain(|s, _| {
                    !matches!(s, FaultScope::Partner(q) | FaultScope::PartnerAccount { partner: q, .. } if q == p)
                }),
                _ => {
                    faults.remove(&scope);
                }
            }
        }
    }

    /// The fault that applies to `account_id` of `partner` now: its own, else its
    /// partner's, else the one for everyone.
    pub fn fault_for(&self, partner: &str, account_id: &str) -> Option<Fault> {
        let faults = self.faults.read().ok()?;
        faults
            .get(&FaultScope::PartnerAccount {
                partner: partner.to_owned(),
                account: account_id.to_owned(),
            })
            .or_else(|| faults.get(&FaultScope::Account(account_id.to_owned())))
            .or_else(|| faults.get(&FaultScope::Partner(partner.to_owned())))
            .or_else(|| faults.get(&FaultScope::Everyone))
            .cloned()
    }
}

/// The bank as a router (serve it on its own port).
pub fn router(bank: Arc<SandboxBank>) -> Router {
    Router::new()
        .route(
            "/open-banking/v3.1/aisp/accounts/{account_id}/transactions",
            get(transactions),
        )
        .route("/.well-known/openid-configuration", get(authz::discovery))
        .route("/register", post(authz::register))
        .route("/token", post(authz::token))
        .route(
            "/authorize",
            get(authz::authorize_page).post(authz::authorize),
        )
        .route(
            "/open-banking/v3.1/aisp/account-access-consents",
            post(authz::create_consent),
        )
        .route(
            "/open-banking/v3.1/aisp/account-access-consents/{consent_id}",
            get(authz::get_consent).delete(authz::delete_consent),
        )
        .route("/open-banking/v3.1/aisp/accounts", get(authz::accounts))
        .route(
            "/open-banking/v3.1/aisp/accounts/{account_id}/balances",
            get(authz::balances),
        )
        .route("/faults", post(set_fault))
        .with_state(bank)
}

async fn set_fault(State(bank): State<Arc<SandboxBank>>, body: Option<Json<Fault>>) -> StatusCode {
    bank.set_fault(body.map(|Json(f)| f).unwrap_or_default());
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionsQuery {
    #[serde(rename = "fromBookingDateTime")]
    from: Option<DateTime<Utc>>,
    page: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ObAmount {
    amount: String,
    currency: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ObMerchant {
    merchant_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ObCode {
    code: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ObTransaction {
    account_id: String,
    transaction_id: String,
    transaction_reference: String,
    credit_debit_indicator: &'static str,
    status: &'static str,
    booking_date_time: String,
    amount: ObAmount,
    transaction_information: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    merchant_details: Option<ObMerchant>,
    proprietary_bank_transaction_code: ObCode,
}

fn ob_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Code": code, "Message": message, "Errors": [{ "ErrorCode": code, "Message": message }] });
    (status, Json(body)).into_response()
}

async fn transactions(
    State(bank): State<Arc<SandboxBank>>,
    Path(account_id): Path<String>,
    Query(query): Query<TransactionsQuery>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // A sandbox shortcut's consent id, or an access token of an authorised consent.
    let (persona, partner, consented_account) = match bearer.and_then(decode_consent) {
        Some((persona, partner, account)) => {
            (persona.to_owned(), partner.to_owned(), account.to_owned())
        }
        None => {
            match bank
                .authority
                .grant_of(bearer.unwrap_or_default(), bank.clock.now())
            {
                Ok(oauth::Grant::Consent {
                    client_id,
                    consent_id,
                }) => {
                    let covered = bank
                        .authority
                        .consent_by_id(&consent_id)
                        .is_some_and(|c| c.accounts.contains(&account_id));
                    let persona = oauth::persona_of(&account_id).unwrap_or("salaried");
                    let account = if covered {
                        account_id.clone()
                    } else {
                        String::new()
                    };
                    (persona.to_owned(), client_id, account)
                }
                Err(oauth::Denied::ConsentNotAuthorised) => {
                    return ob_error(
                        StatusCode::FORBIDDEN,
                        "UK.OBIE.Resource.ConsentRevoked",
                        "the consent is revoked, expired or not authorised",
                    );
                }
                _ => {
                    return ob_error(
                        StatusCode::UNAUTHORIZED,
                        "UK.OBIE.Header.Invalid",
                        "no valid consent or access token in Authorization",
                    );
                }
            }
        }
    };
    let (persona, partner) = (persona.as_str(), partner.as_str());
    if consented_account != account_id {
        return ob_error(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.ConsentMismatch",
            "the consent does not cover this account",
        );
    }
    if let Some(fault) = bank.fault_for(partner, &account_id) {
        if let Some(ms) = fault.latency_ms {
            let spread = f64::from(fault.jitter_percent.unwrap_or(0).min(100)) / 100.0;
            let factor = 1.0 + spread * (2.0 * crate::random::random_unit() - 1.0);
            tokio::time::sleep(Duration::from_millis(ms).mul_f64(factor)).await;
        }
        match fault.kind {
            Some(FaultKind::ServerError) => {
                return ob_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UK.OBIE.UnexpectedError",
                    "the bank is down",
                );
            }
            Some(FaultKind::RateLimited) => {
                let mut r = ob_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "UK.OBIE.RateLimited",
                    "slow down",
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    fault.retry_after_seconds.unwrap_or(1).into(),
                );
                return r;
            }
            Some(FaultKind::Hang) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Some(FaultKind::ConsentRevoked) => {
                return ob_error(
                    StatusCode::FORBIDDEN,
                    "UK.OBIE.Resource.ConsentRevoked",
                    "the user revoked the consent",
                );
            }
            None => {}
        }
    }
    // The bank's data moves with the partner's own (sandbox) time.
    let now =
        uuid::Uuid::parse_str(partner).map_or_else(|_| bank.clock.now(), |p| bank.clock.now_for(p));
    let oldest = now - TimeDelta::days(HISTORY_DAYS);
    let from = query.from.map_or(oldest, |f| f.max(oldest));
    let all = schedule(persona, &account_id, from, now);
    let page = query.page.unwrap_or(1).max(1);
    let pages = all.len().div_ceil(PAGE_SIZE).max(1);
    let data: Vec<ObTransaction> = all
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|t| {
            let debit = t.amount.starts_with('-');
            // The last day's transactions are still pending; a third of them get a new id
            // when they book (as card payments often do): the reference stays.
            let pending = t.booked_at > now - TimeDelta::hours(PENDING_HOURS);
            let renamed = t.bank_transaction_id.ends_with(['0', '3', '6', '9']);
            ObTransaction {
                account_id: account_id.clone(),
                transaction_id: if pending && renamed {
                    format!("{}-pending", t.bank_transaction_id)
                } else {
                    t.bank_transaction_id.clone()
                },
                transaction_reference: t.bank_transaction_id,
                credit_debit_indicator: if debit { "Debit" } else { "Credit" },
                status: if pending { "Pending" } else { "Booked" },
                booking_date_time: freshet_rules::format_timestamp(t.booked_at),
                amount: ObAmount {
                    amount: t.amount.trim_start_matches('-').to_owned(),
                    currency: "GBP",
                },
                transaction_information: t.description,
                merchant_details: t
                    .merchant_name
                    .map(|merchant_name| ObMerchant { merchant_name }),
                proprietary_bank_transaction_code: ObCode { code: t.category },
            }
        })
        .collect();
    let base = format!("/open-banking/v3.1/aisp/accounts/{account_id}/transactions");
    let from_param = query
        .from
        .map(|f| {
            format!(
                "fromBookingDateTime={}&",
                freshet_rules::format_timestamp(f)
            )
        })
        .unwrap_or_default();
    let mut links = serde_json::json!({ "Self": format!("{base}?{from_param}page={page}") });
    if page < pages {
        links["Next"] = serde_json::json!(format!("{base}?{from_param}page={}", page + 1));
    }
    Json(serde_json::json!({
        "Data": { "Transaction": data },
        "Links": links,
        "Meta": { "TotalPages": pages }
    }))
    .into_response()
}

/// A stable seed from the account id (FNV-1a).
fn seed(account_id: &str) -> u64 {
    account_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The account's transactions booked in `[from, until]`, oldest first: one every 2 to 26
/// hours from a fixed origin, amounts and merchants from the persona.
pub fn schedule(
    persona: &str,
    account_id: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<personas::BankTransaction> {
    let origin = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let seed = seed(account_id);
    let mut out = Vec::new();
    let mut at = origin + TimeDelta::minutes(i64::try_from(seed % 720).unwrap_or(0));
    let mut k: u64 = 0;
    while at <= until {
        if at >= from {
            out.push(personas::transaction(persona, seed, k, at));
        }
        let gap = 120
            + (seed.rotate_left(u32::try_from(k % 64).unwrap_or(0))
                ^ k.wrapping_mul(0x2545_F491_4F6C_DD1D))
                % 1440;
        at += TimeDelta::minutes(i64::try_from(gap).unwrap_or(600));
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_a_partners_faults_clears_all_of_its_own_and_none_of_anothers() {
        let bank = SandboxBank::new(Arc::new(Clock::default()));
        let failing = Fault {
            kind: Some(FaultKind::ServerError),
            ..Fault::default()
        };
        let account = |partner: &str, account: &str| FaultScope::PartnerAccount {
            partner: partner.to_owned(),
            account: account.to_owned(),
        };
        bank.set_scoped_fault(FaultScope::Partner("a".to_owned()), failing.clone());
        bank.set_scoped_fault(account("a", "a1"), failing.clone());
        bank.set_scoped_fault(account("b", "b1"), failing.clone());
        assert!(
            bank.fault_for("a", "a2").is_some(),
            "A's partner-wide fault"
        );
        assert!(
            bank.fault_for("b", "b2").is_none(),
            "not B's other accounts"
        );

        bank.set_scoped_fault(FaultScope::Partner("a".to_owned()), Fault::default());
        assert!(bank.fault_for("a", "a1").is_none());
        assert!(bank.fault_for("a", "a2").is_none());
        assert!(bank.fault_for("b", "b1").is_some(), "B's fault stays");
        assert!(
            bank.fault_for("a", "b1").is_none(),
            "an account fault is the partner's own"
        );
    }
}
