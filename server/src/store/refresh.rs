//! The refresh decision's reads and writes, inside the caller's write transaction
//! (`Store::begin_write`), and the jobs it creates.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::accounts::{AccountRow, account_from_row};
use super::{Store, StoreError};
use crate::model::{Account, ItemError, Job, JobItem, JobStatus, UserSource, from_ms, to_ms};

/// A user and their accounts (by id), read for a refresh decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedUser {
    /// Direct or marketplace.
    pub source: UserSource,
    /// The accounts, ordered by id.
    pub accounts: Vec<Account>,
}

/// The job a triggered refresh creates.
#[derive(Clone, Copy, Debug)]
pub struct NewJob<'a> {
    /// The new job's id.
    pub job_id: Uuid,
    /// Whose.
    pub partner: Uuid,
    /// For which user.
    pub user_id: Uuid,
    /// The triggered accounts.
    pub accounts: &'a [Uuid],
    /// When.
    pub now: DateTime<Utc>,
}

/// A response kept for `Idempotency-Key` replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The user the first request was for.
    pub user_id: Uuid,
    /// Its HTTP status.
    pub status: u16,
    /// Its JSON body, byte for byte.
    pub body: String,
    /// Its `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

/// The user with their accounts, in one query; `None` when the user is not `partner`'s.
pub async fn load_user(
    conn: &mut SqliteConnection,
    partner: Uuid,
    user_id: Uuid,
) -> Result<Option<LoadedUser>, StoreError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT u.source, a.id, a.provider_name, a.account_type, a.currency, a.balance, a.consent_status,
                a.consent_expires_at, a.last_transaction_refresh_date, a.in_flight_since
         FROM users u LEFT JOIN accounts a ON a.user_id = u.id
         WHERE u.id = ?1 AND u.partner_id = ?2 ORDER BY a.id",
    )
    .bind(user_id.to_string())
    .bind(partner.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let Some(source) = rows.first().map(|r| UserSource::parse(&r.0)) else {
        return Ok(None);
    };
    let accounts = rows
        .into_iter()
        .filter_map(
            |(_, id, provider, kind, currency, balance, consent, expires, last, in_flight)| {
                let row: AccountRow = (
                    id?, provider?, kind?, currency?, balance?, consent?, expires, last, in_flight,
                );
                account_from_row(row)
            },
        )
        .collect();
    Ok(Some(LoadedUser { source, accounts }))
}

/// Inserts the job and one item per triggered account, and marks those accounts in
/// flight (an account already in flight keeps its trigger time: its fetch is not started twice).
pub async fn insert_job(conn: &mut SqliteConnection, job: NewJob<'_>) -> Result<(), StoreError> {
    let now = to_ms(job.now);
    let id = job.job_id.to_string();
    sqlx::query("INSERT INTO refresh_jobs (id, partner_id, user_id, status, created_at) VALUES (?1, ?2, ?3, 'QUEUED', ?4)")
        .bind(&id)
        .bind(job.partner.to_string())
        .bind(job.user_id.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let mut items = QueryBuilder::new("INSERT INTO refresh_job_items (job_id, account_id, state) ");
    items.push_values(job.accounts, |mut row, account| {
        row.push_bind(&id)
            .push_bind(account.to_string())
            .push("'QUEUED'");
    });
    items.build().execute(&mut *conn).await?;
    let mut mark =
        QueryBuilder::new("UPDATE accounts SET in_flight_since = COALESCE(in_flight_since, ");
    mark.push_bind(now)
        .push("), in_flight_job_id = COALESCE(in_flight_job_id, ")
        .push_bind(&id)
        .push(") WHERE id IN (");
    let mut ids = mark.separated(", ");
    for account in job.accounts {
        ids.push_bind(account.to_string());
    }
    mark.push(")");
    mark.build().execute(&mut *conn).await?;
    Ok(())
}

/// The response stored under `key` by `partner` at or after `since`.
pub async fn stored_response(
    conn: &mut SqliteConnection,
    partner: Uuid,
    key: &str,
    since: DateTime<Utc>,
) -> Result<Option<StoredResponse>, StoreError> {
    let row: Option<(String, i64, String, Option<i64>)> = sqlx::query_as(
        "SELECT user_id, status, body, retry_after FROM idempotency_keys WHERE partner_id = ?1 AND key = ?2 AND created_at >= ?3",
    )
    .bind(partner.to_string())
    .bind(key)
    .bind(to_ms(since))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.and_then(|(user_id, status, body, retry_after)| {
        Some(StoredResponse {
            user_id: Uuid::parse_str(&user_id).ok()?,
            status: u16::try_from(status).ok()?,
            body,
            retry_after: retry_after.and_then(|s| u64::try_from(s).ok()),
        })
    }))
}

/// Keeps a response for replays under `key` (replacing an expired record of the same key).
pub async fn store_response(
    conn: &mut SqliteConnection,
    partner: Uuid,
    key: &str,
    response: &StoredResponse,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR REPLACE INTO idempotency_keys (partner_id, key, user_id, status, body, retry_after, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(partner.to_string())
    .bind(key)
    .bind(response.user_id.to_string())
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(response.retry_after.and_then(|s| i64::try_from(s).ok()))
    .bind(to_ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// The job, if it is the user's and the user `partner`'s.
    pub async fn job(
        &self,
        partner: Uuid,
        user_id: Uuid,
        job_id: Uuid,
    ) -> Result<Option<Job>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let job: Option<(String, i64)> = sqlx::query_as(
            "SELECT status, created_at FROM refresh_jobs WHERE id = ?1 AND user_id = ?2 AND partner_id = ?3",
        )
        .bind(job_id.to_string())
        .bind(user_id.to_string())
        .bind(partner.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((status, created_at)) = job else {
            return Ok(None);
        };
        type ItemRow = (
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<bool>,
        );
        let items: Vec<ItemRow> = sqlx::query_as(
            "SELECT account_id, state, finished_at, new_transactions, error_code, error_retryable
             FROM refresh_job_items WHERE job_id = ?1 ORDER BY account_id",
        )
        .bind(job_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let accounts = items
            .into_iter()
            .filter_map(
                |(account_id, state, finished_at, new_transactions, error_code, retryable)| {
                    Some(JobItem {
                        account_id: Uuid::parse_str(&account_id).ok()?,
                        state: JobStatus::parse(&state),
                        finished_at: finished_at.map(from_ms),
                        new_transactions,
                        error: error_code.map(|code| ItemError {
                            code,
                            retryable: retryable.unwrap_or(false),
                        }),
                    })
                },
            )
            .collect();
        Ok(Some(Job {
            job_id,
            user_id,
            created_at: from_ms(created_at),
            status: JobStatus::parse(&status),
            accounts,
        }))
    }
}
