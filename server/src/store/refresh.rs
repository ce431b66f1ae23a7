//! The refresh decision's reads and writes, inside the caller's write transaction
//! (`Store::begin_write`), and the jobs it creates.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

use freshet_rules::AccountState;

use super::accounts::consent_status;
use super::{Store, StoreError};
use crate::model::{ItemError, Job, JobItem, JobStatus, UserSource, from_ms, to_ms};

/// A user and what the rules read of their accounts (by id), loaded for a refresh decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedUser {
    /// Direct or marketplace.
    pub source: UserSource,
    /// The accounts' consent, refresh and in-flight state, ordered by id.
    pub accounts: Vec<AccountState>,
}

/// The job a triggered refresh creates.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The new job's id.
    pub job_id: Uuid,
    /// Whose.
    pub partner: Uuid,
    /// For which user.
    pub user_id: Uuid,
    /// The triggered accounts' ids.
    pub accounts: Vec<String>,
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

/// Starts the batch's write transaction (`BEGIN IMMEDIATE`) and reads the users of the batch
/// with their accounts, keyed by user id, each with the partner it belongs to (the caller
/// checks it: another partner's user is "not found"). Only the columns the rules read:
/// this runs for every refresh request.
///
/// Round trips to sqlx's SQLite thread are what a batch costs (each waits for a thread to
/// wake on a busy two-core machine), so they are few: `BEGIN` and this read travel
/// together, the ids go in as one JSON array, the rows come back as one JSON array, and
/// [`insert_jobs_and_commit`] ends the transaction. The transaction is managed by hand:
/// after an error the caller must [`rollback`].
pub async fn begin_and_load_users(
    conn: &mut SqliteConnection,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, (Uuid, LoadedUser)>, StoreError> {
    // Accounts come in no particular order; the rules sort their decisions by id.
    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let mut users: HashMap<Uuid, (Uuid, LoadedUser)> = HashMap::with_capacity(user_ids.len());
    let ids = serde_json::to_string(user_ids).map_err(|e| StoreError::Encoding(e.to_string()))?;
    let (json,): (String,) = sqlx::query_as(
        "BEGIN IMMEDIATE;
         SELECT json_group_array(json_array(u.id, u.partner_id, u.source, a.id, a.consent_status,
                    a.consent_expires_at, a.last_transaction_refresh_date, a.in_flight_since))
         FROM users u LEFT JOIN accounts a ON a.user_id = u.id
         WHERE u.id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids)
    .fetch_one(&mut *conn)
    .await?;
    let rows: Vec<Row> =
        serde_json::from_str(&json).map_err(|e| StoreError::Encoding(e.to_string()))?;
    for (user_id, partner, source, account_id, consent, expires, last, in_flight) in rows {
        let (Ok(user_id), Ok(partner)) = (Uuid::parse_str(&user_id), Uuid::parse_str(&partner))
        else {
            continue;
        };
        let entry = users.entry(user_id).or_insert_with(|| {
            (
                partner,
                LoadedUser {
                    source: UserSource::parse(&source),
                    accounts: Vec::new(),
                },
            )
        });
        if let (Some(account_id), Some(consent)) = (account_id, consent) {
            entry.1.accounts.push(AccountState {
                account_id,
                consent_status: consent_status(&consent),
                consent_expires_at: expires.map(from_ms),
                last_transaction_refresh_date: last.map(from_ms),
                in_flight_since: in_flight.map(from_ms),
            });
        }
    }
    Ok(users)
}

/// Inserts the jobs of a batch decided at `now`, one item per triggered account, marks
/// those accounts in flight (an account already in flight keeps its trigger time: its
/// fetch is not started twice), and commits: one round trip (see [`begin_and_load_users`]).
/// When this returns `Ok`, the batch is on disk (`synchronous=FULL`).
pub async fn insert_jobs_and_commit(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(());
    }
    let encode = |v: &dyn erased::Json| v.json().map_err(|e| StoreError::Encoding(e.to_string()));
    let job_rows: Vec<(String, String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j.job_id.to_string(),
                j.partner.to_string(),
                j.user_id.to_string(),
            )
        })
        .collect();
    let item_rows: Vec<(String, &str)> = jobs
        .iter()
        .flat_map(|job| {
            let id = job.job_id.to_string();
            job.accounts.iter().map(move |a| (id.clone(), a.as_str()))
        })
        .collect();
    let account_ids: Vec<&str> = item_rows.iter().map(|(_, a)| *a).collect();
    // One round trip to SQLite's thread for all three statements. Each statement names every
    // parameter, in order, through the same `p` CTE: sqlx binds a statement's parameters by
    // name only when none of ?1..?N is missing from it.
    sqlx::query(
        "WITH p(jobs, items, accounts, now) AS (SELECT ?1, ?2, ?3, ?4)
         INSERT INTO refresh_jobs (id, partner_id, user_id, status, created_at)
           SELECT value ->> 0, value ->> 1, value ->> 2, 'QUEUED', p.now FROM p, json_each(p.jobs);
         WITH p(jobs, items, accounts, now) AS (SELECT ?1, ?2, ?3, ?4)
         INSERT INTO refresh_job_items (job_id, account_id, state)
           SELECT value ->> 0, value ->> 1, 'QUEUED' FROM p, json_each(p.items);
         WITH p(jobs, items, accounts, now) AS (SELECT ?1, ?2, ?3, ?4)
         UPDATE accounts SET in_flight_since = (SELECT now FROM p)
           WHERE in_flight_since IS NULL AND id IN (SELECT value FROM p, json_each(p.accounts));
         COMMIT;",
    )
    .bind(encode(&job_rows)?)
    .bind(encode(&item_rows)?)
    .bind(encode(&account_ids)?)
    .bind(to_ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends a transaction begun by [`begin_and_load_users`] after an error (a no-op when none is open).
pub async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
}

/// `serde_json::to_string` behind a trait object, so one closure encodes every row type.
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
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

/// Keeps responses for replays (replacing expired records of the same keys), in one statement.
pub async fn store_responses(
    conn: &mut SqliteConnection,
    responses: &[(Uuid, String, StoredResponse)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if responses.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::new(
        "INSERT OR REPLACE INTO idempotency_keys (partner_id, key, user_id, status, body, retry_after, created_at) ",
    );
    insert.push_values(responses, |mut row, (partner, key, response)| {
        row.push_bind(partner.to_string())
            .push_bind(key)
            .push_bind(response.user_id.to_string())
            .push_bind(i64::from(response.status))
            .push_bind(&response.body)
            .push_bind(response.retry_after.and_then(|s| i64::try_from(s).ok()))
            .push_bind(to_ms(now));
    });
    insert.build().execute(&mut *conn).await?;
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
