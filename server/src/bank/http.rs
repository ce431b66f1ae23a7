//! The connector for banks that speak the UK Open Banking Account and Transaction API over
//! HTTP — today the sandbox bank. Follows `Links.Next` pages; maps the bank's answers to
//! [`BankError`]s: 403 = consent revoked, 429 = rate-limited (with `Retry-After`), 5xx and
//! connection failures = unavailable, no answer within the timeout = timeout.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Bank, BankAccount, BankError, FetchedTransaction};

/// At most this many pages per fetch: a bank that never stops paging is a broken bank.
const MAX_PAGES: usize = 1000;

/// An Open Banking bank at `base_url` (e.g. `http://127.0.0.1:4010`).
#[derive(Clone, Debug)]
pub struct HttpBank {
    base_url: String,
    client: reqwest::Client,
}

impl HttpBank {
    /// A connector whose every request gives up after `timeout`. Redirects are not followed.
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Result<Self, BankError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BankError::Internal(e.to_string()))?;
        Ok(Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            client,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    data: PageData,
    links: Option<Links>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PageData {
    #[serde(default)]
    transaction: Vec<ObTransaction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Links {
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObTransaction {
    transaction_id: String,
    transaction_reference: Option<String>,
    status: Option<String>,
    credit_debit_indicator: String,
    booking_date_time: DateTime<Utc>,
    amount: ObAmount,
    transaction_information: Option<String>,
    merchant_details: Option<ObMerchant>,
    proprietary_bank_transaction_code: Option<ObCode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObAmount {
    amount: String,
    currency: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObMerchant {
    merchant_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObCode {
    code: Option<String>,
}

fn from_reqwest(e: &reqwest::Error) -> BankError {
    if e.is_timeout() {
        BankError::Timeout
    } else if e.is_connect() || e.is_request() {
        BankError::Unavailable
    } else {
        BankError::Internal(e.to_string())
    }
}

#[async_trait::async_trait]
impl Bank for HttpBank {
    async fn transactions(
        &self,
        account: &BankAccount,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        // A sandbox shortcut's consent is its own bearer.
        fetch_transactions(
            &self.client,
            &format!("{}/open-banking/v3.1/aisp", self.base_url),
            &account.account_id,
            &account.consent_id,
            since,
        )
        .await
    }
}

/// What [`fetch_transactions`] says when the bank answers 401 (the access token is no
/// longer good): a connector with a refresh token tries once more.
pub const UNAUTHORIZED: &str = "the bank answered 401 Unauthorized";

/// The transactions of `account_id` booked at or after `since`, from the AIS API at
/// `aisp_base` (`…/open-banking/v3.1/aisp`) with `bearer`, following `Links.Next`.
pub async fn fetch_transactions(
    client: &reqwest::Client,
    aisp_base: &str,
    account_id: &str,
    bearer: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<FetchedTransaction>, BankError> {
    let aisp_base = aisp_base.trim_end_matches('/');
    let origin = url::Url::parse(aisp_base)
        .map(|u| u.origin().ascii_serialization())
        .map_err(|e| BankError::Internal(format!("{aisp_base}: {e}")))?;
    let mut url = format!("{aisp_base}/accounts/{account_id}/transactions");
    if let Some(since) = since {
        url.push_str(&format!(
            "?fromBookingDateTime={}",
            freshet_rules::format_timestamp(since)
        ));
    }
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let response = client
            .get(&url)
            .bearer_auth(bearer)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| from_reqwest(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(BankError::ConsentRevoked);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(BankError::Internal(UNAUTHORIZED.to_owned()));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            return Err(BankError::RateLimited { retry_after });
        }
        if status.is_server_error() {
            return Err(BankError::Unavailable);
        }
        if !status.is_success() {
            return Err(BankError::Internal(format!("the bank answered {status}")));
        }
        let page: Page = response.json().await.map_err(|e| from_reqwest(&e))?;
        out.extend(page.data.transaction.into_iter().map(|t| {
            let debit = t.credit_debit_indicator.eq_ignore_ascii_case("Debit");
            FetchedTransaction {
                bank_transaction_id: t.transaction_id,
                booked_at: t.booking_date_time,
                amount: if debit {
                    format!("-{}", t.amount.amount)
                } else {
                    t.amount.amount
                },
                currency: t.amount.currency,
                description: t.transaction_information.unwrap_or_default(),
                merchant_name: t.merchant_details.and_then(|m| m.merchant_name),
                category: t.proprietary_bank_transaction_code.and_then(|c| c.code),
                pending: t.status.is_some_and(|s| s.eq_ignore_ascii_case("Pending")),
                reference: t.transaction_reference,
            }
        }));
        match page.links.and_then(|l| l.next) {
            Some(next) if next.starts_with('/') => url = format!("{origin}{next}"),
            Some(next) => url = next,
            None => return Ok(out),
        }
    }
    Err(BankError::Internal(format!(
        "the bank sent more than {MAX_PAGES} pages"
    )))
}
