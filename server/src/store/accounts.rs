//! Connected accounts.

use chrono::{DateTime, Utc};
use freshet_rules::ConsentStatus;
use uuid::Uuid;

use sqlx::QueryBuilder;

use super::{Store, StoreError, new_id};
use crate::model::{Account, from_ms, to_ms};
use crate::sandbox::BankTransaction;

/// An account to connect (the sandbox's shortcut past the connection journey).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    /// The bank.
    pub provider_name: String,
    /// `CURRENT`, `SAVINGS`, ...
    pub account_type: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Decimal string.
    pub balance: String,
    /// `ACTIVE` or `EXPIRED`.
    pub consent_status: ConsentStatus,
    /// When the consent ends.
    pub consent_expires_at: Option<DateTime<Utc>>,
    /// When transactions were last ingested.
    pub last_transaction_refresh_date: Option<DateTime<Utc>>,
    /// The sandbox bank's persona for its transactions.
    pub persona: String,
    /// Transactions already ingested (stored as created at `last_transaction_refresh_date`).
    pub history: Vec<BankTransaction>,
}

pub(super) type AccountRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub(super) const ACCOUNT_COLUMNS: &str = "id, provider_name, account_type, currency, balance, consent_status, \
     consent_expires_at, last_transaction_refresh_date, in_flight_since";

pub(super) fn account_from_row(row: AccountRow) -> Option<Account> {
    let (id, provider_name, account_type, currency, balance, consent, expires, last, in_flight) =
        row;
    Some(Account {
        account_id: Uuid::parse_str(&id).ok()?,
        provider_name,
        account_type,
        currency,
        balance,
        consent_status: consent_status(&consent),
        consent_expires_at: expires.map(from_ms),
        last_transaction_refresh_date: last.map(from_ms),
        in_flight_since: in_flight.map(from_ms),
    })
}

pub(super) fn consent_status(text: &str) -> ConsentStatus {
    if text == "ACTIVE" {
        ConsentStatus::Active
    } else {
        ConsentStatus::Expired
    }
}

pub(super) fn consent_text(status: ConsentStatus) -> &'static str {
    match status {
        ConsentStatus::Active => "ACTIVE",
        ConsentStatus::Expired => "EXPIRED",
    }
}

impl Store {
    /// The user's accounts by id, or `None` when the user is not `partner`'s.
    pub async fn accounts(
        &self,
        partner: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Vec<Account>>, StoreError> {
        let mut conn = self.read.acquire().await?;
        if !super::users::owned_by(&mut conn, partner, user_id).await? {
            return Ok(None);
        }
        let rows: Vec<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_id = ?1 ORDER BY id"
        ))
        .bind(user_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(
            rows.into_iter().filter_map(account_from_row).collect(),
        ))
    }

    /// Connects `accounts` to the user in one transaction, in the given order (with
    /// `initial_fetch`, also queues their first fetch); `None` when the user is not
    /// `partner`'s (and nothing is written).
    pub async fn connect_accounts(
        &self,
        partner: Uuid,
        user_id: Uuid,
        accounts: &[NewAccount],
        initial_fetch: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Account>>, StoreError> {
        let mut tx = self.begin_write().await?;
        if !super::users::owned_by(&mut tx, partner, user_id).await? {
            return Ok(None);
        }
        let mut created = Vec::with_capacity(accounts.len());
        for a in accounts {
            let id = new_id();
            sqlx::query(
                "INSERT INTO accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,
                   consent_expires_at, last_transaction_refresh_date, persona, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(id.to_string())
            .bind(user_id.to_string())
            .bind(&a.provider_name)
            .bind(&a.account_type)
            .bind(&a.currency)
            .bind(&a.balance)
            .bind(consent_text(a.consent_status))
            .bind(a.consent_expires_at.map(to_ms))
            .bind(a.last_transaction_refresh_date.map(to_ms))
            .bind(&a.persona)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
            let ingested_at = to_ms(a.last_transaction_refresh_date.unwrap_or(now));
            // Oldest first, so that ids (time-ordered) rise with the booking date.
            let oldest_first: Vec<&BankTransaction> = a.history.iter().rev().collect();
            for chunk in oldest_first.chunks(1000) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO transactions (id, account_id, user_id, bank_transaction_id, created, booked_at,
                       amount, currency, description, merchant_name, category) ",
                );
                insert.push_values(chunk, |mut row, t| {
                    row.push_bind(new_id().to_string())
                        .push_bind(id.to_string())
                        .push_bind(user_id.to_string())
                        .push_bind(&t.bank_transaction_id)
                        .push_bind(ingested_at)
                        .push_bind(to_ms(t.booked_at))
                        .push_bind(&t.amount)
                        .push_bind(&a.currency)
                        .push_bind(&t.description)
                        .push_bind(&t.merchant_name)
                        .push_bind(&t.category);
                });
                insert.build().execute(&mut *tx).await?;
            }
            created.push(Account {
                account_id: id,
                provider_name: a.provider_name.clone(),
                account_type: a.account_type.clone(),
                currency: a.currency.clone(),
                balance: a.balance.clone(),
                consent_status: a.consent_status,
                consent_expires_at: a.consent_expires_at,
                last_transaction_refresh_date: a.last_transaction_refresh_date,
                in_flight_since: None,
            });
        }
        if initial_fetch {
            // As after a real connection journey: the first fetch, as a job of its own.
            let ids: Vec<String> = created.iter().map(|a| a.account_id.to_string()).collect();
            super::work::create_job(
                &mut tx,
                "INITIAL",
                &partner.to_string(),
                &user_id.to_string(),
                &ids,
                now,
            )
            .await?;
            for a in &mut created {
                a.in_flight_since = Some(now);
            }
        }
        tx.commit().await?;
        Ok(Some(created))
    }
}
