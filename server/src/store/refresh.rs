//! The refresh decision's transaction: one batch of requests read, decided and written in
//! one `BEGIN IMMEDIATE` transaction on a connection of its own, plus the answers kept for
//! `Idempotency-Key` replays. The decision itself is the caller's (pure, in memory).
//!
//! Round trips to sqlx's SQLite thread are what a batch costs (each waits for a thread to
//! wake on a busy two-core machine), so they are few: `BEGIN` and the read of the users
//! travel together, ids go in as one JSON array and rows come back as one, and the jobs'
//! statements carry the `COMMIT`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use freshet_rules::AccountState;
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::accounts::consent_status;
use super::jobs::{self, NewJob};
use super::{Store, StoreError, json};
use crate::model::{UserSource, from_ms, to_ms};

/// A user and what the rules read of their accounts, loaded for a refresh decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedUser {
    /// Whose user it is (another partner's user is "not found" to the caller).
    pub partner: Uuid,
    /// Direct or marketplace.
    pub source: UserSource,
    /// The accounts' consent, refresh and in-flight state.
    pub accounts: Vec<AccountState>,
}

/// A response kept for `Idempotency-Key` replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The user the first request was for.
    pub user_id: Uuid,
    /// Its HTTP status.
    pub status: u16,
    /// Its body, byte for byte.
    pub body: String,
    /// Its `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

/// What a batch read: its users by id, and the answers kept under its `Idempotency-Key`s.
#[derive(Debug, Default)]
pub struct Batch {
    /// The users of the batch that exist.
    pub users: HashMap<Uuid, LoadedUser>,
    /// Earlier answers by (partner, key).
    pub answers: HashMap<(Uuid, String), StoredResponse>,
}

/// What a batch writes.
#[derive(Debug, Default)]
pub struct BatchWrites {
    /// The jobs its triggered requests created.
    pub jobs: Vec<NewJob>,
    /// Answers to keep, by (partner, key).
    pub responses: Vec<(Uuid, String, StoredResponse)>,
}

/// One row of the batch's read, as the `json_array` of [`begin_and_load_users`] lists it:
/// (user, partner, source, account, consent, expires, last refresh, in flight). By position
/// on purpose: this read runs for every refresh request, and arrays are the smallest JSON
/// to build and parse (names would repeat eight keys per account).
#[derive(serde::Deserialize)]
struct LoadedRow(
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

#[derive(sqlx::FromRow)]
struct AnswerRow {
    partner_id: String,
    key: String,
    user_id: String,
    status: i64,
    body: String,
    retry_after: Option<i64>,
}

/// The refresh decision's writer. Each batch takes the store's one write connection, in
/// turn with every other writer of the process (the pool queues them first come, first
/// served). It once had a connection of its own; then its `BEGIN IMMEDIATE` competed with
/// the pool's connection through SQLite's busy handler, which sleeps and polls — with the
/// engine committing continuously, the poller lost again and again (p99 ~1 s measured by
/// `scripts/loadbench`). Queued in the pool it waits for what is ahead of it, no longer.
#[derive(Debug)]
pub struct RefreshWriter {
    store: Store,
}

impl RefreshWriter {
    /// A writer over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Runs one batch in one write transaction: reads `user_ids` and the answers kept under
    /// `keys` since `keys_since`, lets `decide` decide in memory and say what to write,
    /// writes it and commits. When this returns `Ok`, the batch is on disk
    /// (`synchronous=FULL`); after an error nothing of it was kept, and the next batch
    /// opens a new connection.
    pub async fn run<R>(
        &mut self,
        user_ids: &[Uuid],
        keys: &[(Uuid, String)],
        keys_since: DateTime<Utc>,
        now: DateTime<Utc>,
        decide: impl FnOnce(&mut Batch) -> (R, BatchWrites),
    ) -> Result<R, StoreError> {
        let asked = std::time::Instant::now();
        let mut conn = self.store.write.acquire().await?;
        crate::ops::metrics::db_write_wait(asked.elapsed());
        let result = run_batch(&mut conn, user_ids, keys, keys_since, now, decide).await;
        if result.is_err() {
            // Nothing of the batch is kept; a connection that cannot even roll back is not
            // given back to the pool (it opens a new one).
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                let _ = conn.close().await;
            }
        } else {
            self.store.want_work();
        }
        result
    }
}

async fn run_batch<R>(
    conn: &mut SqliteConnection,
    user_ids: &[Uuid],
    keys: &[(Uuid, String)],
    keys_since: DateTime<Utc>,
    now: DateTime<Utc>,
    decide: impl FnOnce(&mut Batch) -> (R, BatchWrites),
) -> Result<R, StoreError> {
    let mut batch = Batch {
        users: begin_and_load_users(conn, user_ids).await?,
        answers: stored_answers(conn, keys, keys_since).await?,
    };
    let (result, writes) = decide(&mut batch);
    store_answers(conn, &writes.responses, now).await?;
    jobs::insert_and_commit(conn, &writes.jobs, now).await?;
    Ok(result)
}

/// `BEGIN IMMEDIATE` and the users with their accounts, keyed by user id. Only the columns
/// the rules read: this runs for every refresh request.
async fn begin_and_load_users(
    conn: &mut SqliteConnection,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, LoadedUser>, StoreError> {
    let mut users: HashMap<Uuid, LoadedUser> = HashMap::with_capacity(user_ids.len());
    let (rows,): (String,) = sqlx::query_as(
        "BEGIN IMMEDIATE;
         SELECT json_group_array(json_array(u.id, u.partner_id, u.source, a.id, a.consent_status,
                    a.consent_expires_at, a.last_transaction_refresh_date, a.in_flight_since))
         FROM users u LEFT JOIN accounts a ON a.user_id = u.id
         WHERE u.id IN (SELECT value FROM json_each(?1))",
    )
    .bind(json(user_ids)?)
    .fetch_one(&mut *conn)
    .await?;
    let rows: Vec<LoadedRow> =
        serde_json::from_str(&rows).map_err(|e| StoreError::Encoding(e.to_string()))?;
    // Accounts come in no particular order; the rules sort their decisions by id.
    for LoadedRow(user_id, partner, source, account_id, consent, expires, last, in_flight) in rows {
        let (Ok(user_id), Ok(partner)) = (Uuid::parse_str(&user_id), Uuid::parse_str(&partner))
        else {
            continue;
        };
        let user = users.entry(user_id).or_insert_with(|| LoadedUser {
            partner,
            source: UserSource::parse(&source),
            accounts: Vec::new(),
        });
        if let (Some(account_id), Some(consent)) = (account_id, consent) {
            user.accounts.push(AccountState {
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

/// The answers kept under `keys` at or after `since` (no query when there are no keys).
async fn stored_answers(
    conn: &mut SqliteConnection,
    keys: &[(Uuid, String)],
    since: DateTime<Utc>,
) -> Result<HashMap<(Uuid, String), StoredResponse>, StoreError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<AnswerRow> = sqlx::query_as(
        "SELECT partner_id, key, user_id, status, body, retry_after FROM idempotency_keys
         WHERE created_at >= ?2
           AND (partner_id, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
    )
    .bind(json(keys)?)
    .bind(to_ms(since))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                (Uuid::parse_str(&r.partner_id).ok()?, r.key),
                StoredResponse {
                    user_id: Uuid::parse_str(&r.user_id).ok()?,
                    status: u16::try_from(r.status).ok()?,
                    body: r.body,
                    retry_after: r.retry_after.and_then(|s| u64::try_from(s).ok()),
                },
            ))
        })
        .collect())
}

/// Keeps answers for replays (replacing expired records of the same keys), in one statement.
async fn store_answers(
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
