//! Connected accounts: how the bank knows each one (an opaque link the bank's connector
//! reads), their consent and refresh state, and whose they are.

use chrono::{DateTime, Utc};
use freshet_rules::ConsentStatus;
use uuid::Uuid;

use super::jobs::{self, NewJob};
use super::{Accounts, StoreError, new_id};
use crate::bank::FetchedTransaction;
use crate::model::{Account, JobKind, from_ms, to_ms};

/// How a bank knows an account: which bank, its id there, and the consent freshet presents.
/// Only that bank's connector reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountAtBank {
    /// The bank (`sandbox`, ...).
    pub bank_id: String,
    /// The bank's id for the account.
    pub account_id: String,
    /// The consent the user gave, as the bank names it.
    pub consent_id: String,
}

/// An account to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    /// Our id for it (the caller picks it, so that the bank link may name it).
    pub account_id: Uuid,
    /// The bank, as the API shows it.
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
    /// How the bank knows it.
    pub bank: AccountAtBank,
    /// Transactions already ingested, newest first (stored as created at
    /// `last_transaction_refresh_date`).
    pub history: Vec<FetchedTransaction>,
}

#[derive(sqlx::FromRow)]
pub(super) struct AccountRow {
    id: String,
    provider_name: String,
    account_type: String,
    currency: String,
    balance: String,
    consent_status: String,
    consent_expires_at: Option<i64>,
    last_transaction_refresh_date: Option<i64>,
    in_flight_since: Option<i64>,
    bank_id: String,
    bank_consent_id: String,
}

impl AccountRow {
    fn into_account(self) -> Option<Account> {
        Some(Account {
            account_id: Uuid::parse_str(&self.id).ok()?,
            provider_name: self.provider_name,
            account_type: self.account_type,
            currency: self.currency,
            balance: self.balance,
            consent_status: consent_status(&self.consent_status),
            consent_expires_at: self.consent_expires_at.map(from_ms),
            last_transaction_refresh_date: self.last_transaction_refresh_date.map(from_ms),
            in_flight_since: self.in_flight_since.map(from_ms),
            // Named by the services, which know the banks' names.
            bank_name: self.bank_id.clone(),
            bank_id: self.bank_id,
            bank_consent_id: self.bank_consent_id,
        })
    }
}

pub(super) fn consent_status(text: &str) -> ConsentStatus {
    if text == "ACTIVE" {
        ConsentStatus::Active
    } else {
        ConsentStatus::Expired
    }
}

fn consent_text(status: ConsentStatus) -> &'static str {
    match status {
        ConsentStatus::Active => "ACTIVE",
        ConsentStatus::Expired => "EXPIRED",
    }
}

/// How much a connection may add to what a user and a partner hold.
#[derive(Clone, Copy, Debug)]
pub struct ConnectQuota {
    /// Accounts the user may hold in all.
    pub accounts_per_user: u32,
    /// Transactions the partner's users may hold in all (of made-up history).
    pub transactions_per_partner: u32,
}

/// What a connection did.
#[derive(Debug)]
pub enum Connected {
    /// The new accounts, in the order asked.
    Accounts(Vec<Account>),
    /// The user is not the partner's: nothing was written.
    NoSuchUser,
    /// It would pass the quota: nothing was written.
    OverQuota,
}

impl Accounts<'_> {
    /// The user's accounts by id, or `None` when the user is not `partner`'s.
    pub async fn of_user(
        &self,
        partner: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Vec<Account>>, StoreError> {
        let rows: Vec<AccountRow> = on_read!(self, |c| {
            let mut conn = c.acquire().await?;
            if !super::users::owned_by(&mut *conn, partner, user_id).await? {
                return Ok(None);
            }
            sqlx::query_as(
                "SELECT id, provider_name, account_type, currency, balance, consent_status,
               consent_expires_at, last_transaction_refresh_date, in_flight_since,
               bank_id, bank_consent_id
             FROM accounts WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id.to_string())
            .fetch_all(&mut *conn)
            .await?
        });
        Ok(Some(
            rows.into_iter()
                .filter_map(AccountRow::into_account)
                .collect(),
        ))
    }

    /// Connects `accounts` to the user in one transaction, in the given order, as of `now`
    /// (the partner's time); with `initial_fetch` (the server's time now), also queues
    /// their first fetch as a job created then. `NoSuchUser` when the user is not
    /// `partner`'s (and nothing is written).
    ///
    /// The quotas are exact under concurrency: the transaction is serial (`in_tx!`: SQLite's
    /// one writer, PostgreSQL's serial lock), so no other connection counts the user's
    /// accounts between our count and our inserts (accounts are created nowhere else); and
    /// on PostgreSQL the partner's transaction counter is read under its row lock
    /// (`transactions::held_by`), since the engine stores transactions outside the serial
    /// lock: no other commit adds to it between our check and our commit.
    pub async fn connect(
        &self,
        partner: Uuid,
        user_id: Uuid,
        accounts: &[NewAccount],
        initial_fetch: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        quota: ConnectQuota,
    ) -> Result<Connected, StoreError> {
        let created = in_tx!(self, |tx| {
            if !super::users::owned_by(&mut *tx, partner, user_id).await? {
                return Ok(Connected::NoSuchUser);
            }
            let user = user_id.to_string();
            // Counted inside the write transaction: concurrent connections cannot pass together.
            let (held_accounts,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE user_id = $1")
                    .bind(&user)
                    .fetch_one(&mut *tx)
                    .await?;
            if held_accounts + accounts.len() as i64 > i64::from(quota.accounts_per_user) {
                return Ok(Connected::OverQuota);
            }
            let adding: usize = accounts.iter().map(|a| a.history.len()).sum();
            if adding > 0 {
                let held = super::transactions::held_by(&mut tx, &partner.to_string()).await?;
                if held + adding as i64 > i64::from(quota.transactions_per_partner) {
                    return Ok(Connected::OverQuota);
                }
            }
            let mut created = Vec::with_capacity(accounts.len());
            for a in accounts {
                let id = a.account_id.to_string();
                sqlx::query(
                "INSERT INTO accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,
                   consent_expires_at, last_transaction_refresh_date, bank_id, bank_account_id, bank_consent_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&id)
            .bind(&user)
            .bind(&a.provider_name)
            .bind(&a.account_type)
            .bind(&a.currency)
            .bind(&a.balance)
            .bind(consent_text(a.consent_status))
            .bind(a.consent_expires_at.map(to_ms))
            .bind(a.last_transaction_refresh_date.map(to_ms))
            .bind(&a.bank.bank_id)
            .bind(&a.bank.account_id)
            .bind(&a.bank.consent_id)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
                // Oldest first, so that ids (time-ordered) rise with the booking date.
                let oldest_first: Vec<FetchedTransaction> =
                    a.history.iter().rev().cloned().collect();
                let ingested_at = a.last_transaction_refresh_date.unwrap_or(now);
                super::transactions::insert(&mut tx, &id, &user, &oldest_first, ingested_at)
                    .await?;
                created.push(Account {
                    account_id: a.account_id,
                    provider_name: a.provider_name.clone(),
                    account_type: a.account_type.clone(),
                    currency: a.currency.clone(),
                    balance: a.balance.clone(),
                    consent_status: a.consent_status,
                    consent_expires_at: a.consent_expires_at,
                    last_transaction_refresh_date: a.last_transaction_refresh_date,
                    in_flight_since: None,
                    bank_name: a.bank.bank_id.clone(),
                    bank_id: a.bank.bank_id.clone(),
                    bank_consent_id: a.bank.consent_id.clone(),
                });
            }
            if let Some(queued_at) = initial_fetch {
                // As after a real connection journey: the first fetch, as a job of its own.
                let job = NewJob {
                    job_id: new_id(),
                    kind: JobKind::Initial,
                    partner,
                    user_id,
                    accounts: created.iter().map(|a| a.account_id.to_string()).collect(),
                    triggered_at: now,
                };
                jobs::insert(&mut tx, &[job], queued_at).await?;
                for a in &mut created {
                    a.in_flight_since = Some(now);
                }
            }
            tx.commit().await?;
            created
        });
        if initial_fetch.is_some() {
            crate::ops::metrics::jobs_created(JobKind::Initial.as_str(), 1);
            self.want_work();
        }
        Ok(Connected::Accounts(created))
    }

    /// Whether the account belongs to one of `partner`'s users.
    pub async fn is_partners(&self, partner: Uuid, account_id: Uuid) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.id = $1 AND u.partner_id = $2",
            )
            .bind(account_id.to_string())
            .bind(partner.to_string())
            .fetch_optional(c)
            .await?
        });
        Ok(row.is_some())
    }

    /// Whether the account is the user's (and the user `partner`'s).
    pub async fn is_users(
        &self,
        partner: Uuid,
        user_id: Uuid,
        account_id: Uuid,
    ) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.id = $1 AND u.id = $2 AND u.partner_id = $3",
            )
            .bind(account_id.to_string())
            .bind(user_id.to_string())
            .bind(partner.to_string())
            .fetch_optional(c)
            .await?
        });
        Ok(row.is_some())
    }
}
