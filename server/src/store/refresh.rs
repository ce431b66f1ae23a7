//! The refresh decision's transaction: one batch of requests read, decided and written in
//! one write transaction, plus the answers kept for `Idempotency-Key` replays. The decision
//! itself is the caller's (pure, in memory).
//!
//! SQLite: one `BEGIN IMMEDIATE` transaction on the store's one write connection. Round
//! trips to sqlx's SQLite thread are what a batch costs (each waits for a thread to wake on
//! a busy two-core machine), so they are few: `BEGIN` and the read of the users travel
//! together, ids go in as one JSON array and rows come back as one, and the jobs'
//! statements carry the `COMMIT`.
//!
//! PostgreSQL: several replicas decide at once, each in a plain (read committed)
//! transaction of its own; no global lock. What must stay serial is the decision per user
//! (two refreshes of one stale user: exactly one job), so a batch first locks its users'
//! rows, in id order (two replicas' batches sharing users queue, never deadlock), with
//! `FOR NO KEY UPDATE`: it excludes another batch's lock, not the `KEY SHARE` locks that
//! foreign keys take (the engine's inserts of a user's transactions do not wait for it).
//! Only then, in a statement of its own, so with a snapshot taken after the locks, does it
//! read the users' accounts and the answers kept under its keys: a batch that waited for
//! another sees that one's jobs (accounts in flight) and answers. Then the caller decides,
//! and the answers and the jobs are written, each in one statement of arrays, and
//! committed: five round trips (`BEGIN`, lock, read, jobs, `COMMIT`), six with answers.
//!
//! `Idempotency-Key`s are per partner, not per user, so the users' locks do not serialize
//! two batches that use one key for two different users. The primary key does: the second
//! insert waits for the first transaction, and then the upsert replaces an answer only if
//! it had expired (`WHERE idempotency_keys.created_at < keys_since`). A batch whose answer
//! was not stored (`RETURNING` says which were) decided one request as if the key were
//! new when it was not; it rolls back and runs again, from the read, and so answers that
//! request as the first one's replay (same user) or as a reused key (another user), just
//! as if it had come second on SQLite. Answers are written in (partner, key) order, so two
//! batches waiting for each other's keys cannot deadlock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use freshet_rules::AccountState;
use sqlx::{PgConnection, PgPool, QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::accounts::consent_status;
use super::jobs::{self, NewJob};
use super::{Db, Store, StoreError, json};
use crate::model::{UserSource, from_ms, to_ms};

/// How many times a PostgreSQL batch runs before it gives up: again when another replica
/// took one of its `Idempotency-Key`s meanwhile, or PostgreSQL broke a deadlock or a
/// serialization failure by failing it (neither is expected: locks are taken in order).
const PG_ATTEMPTS: u32 = 3;

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

/// The refresh decision's writer. On SQLite each batch takes the store's one write
/// connection, in turn with every other writer of the process (the pool queues them first
/// come, first served). It once had a connection of its own; then its `BEGIN IMMEDIATE`
/// competed with the pool's connection through SQLite's busy handler, which sleeps and
/// polls — with the engine committing continuously, the poller lost again and again (p99
/// ~1 s measured by `scripts/loadbench`). Queued in the pool it waits for what is ahead of
/// it, no longer. On PostgreSQL each batch takes a connection of the pool and locks only
/// its own users (see the module's doc).
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
    /// (`synchronous=FULL`; on PostgreSQL `synchronous_commit=on`); after an error nothing
    /// of it was kept, and the next batch opens a new connection. On PostgreSQL `decide`
    /// may run more than once (see the module's doc): only the last run's writes are kept,
    /// and its result is returned.
    pub async fn run<R>(
        &mut self,
        user_ids: &[Uuid],
        keys: &[(Uuid, String)],
        keys_since: DateTime<Utc>,
        now: DateTime<Utc>,
        mut decide: impl FnMut(&mut Batch) -> (R, BatchWrites),
    ) -> Result<R, StoreError> {
        let result = match &self.store.db {
            Db::Sqlite { write, .. } => {
                let asked = std::time::Instant::now();
                let mut conn = write.acquire().await?;
                crate::ops::metrics::db_write_wait(asked.elapsed());
                let result = run_batch(&mut conn, user_ids, keys, keys_since, now, decide).await;
                if result.is_err() {
                    // Nothing of the batch is kept; a connection that cannot even roll back
                    // is not given back to the pool (it opens a new one).
                    if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                        let _ = conn.close().await;
                    }
                }
                result
            }
            Db::Postgres { pool } => {
                let mut attempt = 1;
                loop {
                    match run_batch_pg(pool, user_ids, keys, keys_since, now, &mut decide).await {
                        Ok(Some(result)) => break Ok(result),
                        Ok(None) if attempt < PG_ATTEMPTS => {
                            tracing::debug!(
                                attempt,
                                "an Idempotency-Key of the batch was taken meanwhile; deciding again"
                            );
                        }
                        Ok(None) => {
                            break Err(StoreError::Database(sqlx::Error::Protocol(format!(
                                "an Idempotency-Key of the batch was taken by another transaction {PG_ATTEMPTS} times in a row"
                            ))));
                        }
                        Err(e) if attempt < PG_ATTEMPTS && is_transient(&e) => {
                            tracing::warn!(attempt, error = %e, "refresh batch failed transiently; deciding again");
                        }
                        Err(e) => break Err(e),
                    }
                    attempt += 1;
                }
            }
        };
        if result.is_ok() {
            self.store.want_work();
        }
        result
    }
}

/// A deadlock or serialization failure that PostgreSQL resolved by failing this transaction.
fn is_transient(e: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = e else {
        return false;
    };
    matches!(db.code().as_deref(), Some("40P01" | "40001"))
}

/// One row of PostgreSQL's read of a batch: a user (`kind` 0: user, partner, source), one
/// of its accounts (`kind` 1: user, account, consent; expires, last refresh, in flight) or
/// an answer kept under a key (`kind` 2: partner, key, user, body; status, retry after).
/// One statement for all three, typed columns rather than JSON.
#[derive(sqlx::FromRow)]
struct PgReadRow {
    kind: i32,
    t1: String,
    t2: String,
    t3: String,
    t4: Option<String>,
    n1: Option<i64>,
    n2: Option<i64>,
    n3: Option<i64>,
}

/// The batch's read on PostgreSQL, once its users are locked (see [`PgReadRow`]). Each
/// part reaches its table through an index, whatever the statistics say (right after a
/// bulk load there are none, and a join of the users with `accounts` was planned as a scan
/// of every account): the users by primary key, each user's accounts by
/// `accounts_by_user` (`LATERAL .. OFFSET 0`, which the planner keeps as one probe per
/// user), each key's answer by primary key (`LIMIT 1`).
const READ_PG: &str =
    "SELECT 0 AS kind, u.id AS t1, u.partner_id AS t2, u.source AS t3, NULL::text AS t4,
       NULL::bigint AS n1, NULL::bigint AS n2, NULL::bigint AS n3
     FROM users u WHERE u.id = ANY($1)
     UNION ALL
     SELECT 1, a.user_id, a.id, a.consent_status, NULL, a.consent_expires_at,
       a.last_transaction_refresh_date, a.in_flight_since
     FROM unnest($1::text[]) AS x(id)
     CROSS JOIN LATERAL (SELECT * FROM accounts a WHERE a.user_id = x.id OFFSET 0) AS a
     UNION ALL
     SELECT 2, k.partner_id, k.key, k.user_id, k.body, k.status, k.retry_after, NULL
     FROM unnest($2::text[], $3::text[]) AS q(partner_id, key)
     CROSS JOIN LATERAL (SELECT * FROM idempotency_keys k
       WHERE k.partner_id = q.partner_id AND k.key = q.key AND k.created_at >= $4 LIMIT 1) AS k";

/// Keeps answers on PostgreSQL, replacing only expired ones (created before `$8`); the
/// count says how many were stored.
const STORE_ANSWERS_PG: &str = "WITH stored AS (
       INSERT INTO idempotency_keys (partner_id, key, user_id, status, body, retry_after, created_at)
       SELECT r.partner_id, r.key, r.user_id, r.status, r.body, r.retry_after, $7
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
         WITH ORDINALITY AS r(partner_id, key, user_id, status, body, retry_after, ord)
       ORDER BY r.ord
       ON CONFLICT (partner_id, key) DO UPDATE SET user_id = excluded.user_id,
         status = excluded.status, body = excluded.body, retry_after = excluded.retry_after,
         created_at = excluded.created_at
       WHERE idempotency_keys.created_at < $8
       RETURNING 1
     )
     SELECT COUNT(*) FROM stored";

/// One run of a batch on PostgreSQL (see the module's doc): `None` when an answer could not
/// be stored because another transaction stored a live one under its key meanwhile (rolled
/// back; the caller runs the batch again).
async fn run_batch_pg<R>(
    pool: &PgPool,
    user_ids: &[Uuid],
    keys: &[(Uuid, String)],
    keys_since: DateTime<Utc>,
    now: DateTime<Utc>,
    decide: &mut impl FnMut(&mut Batch) -> (R, BatchWrites),
) -> Result<Option<R>, StoreError> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = user_ids.iter().map(Uuid::to_string).collect();
    let asked = std::time::Instant::now();
    sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    crate::ops::metrics::db_write_wait(asked.elapsed());
    let mut batch = load_pg(&mut tx, &ids, keys, keys_since).await?;
    let (result, writes) = decide(&mut batch);
    if !store_answers_pg(&mut tx, &writes.responses, now, keys_since).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    jobs::insert(&mut *tx, &writes.jobs, now).await?;
    tx.commit().await?;
    Ok(Some(result))
}

/// The users (with their accounts) and the live answers of a batch, in one statement.
async fn load_pg(
    conn: &mut PgConnection,
    ids: &[String],
    keys: &[(Uuid, String)],
    since: DateTime<Utc>,
) -> Result<Batch, StoreError> {
    let key_partners: Vec<String> = keys.iter().map(|(p, _)| p.to_string()).collect();
    let key_names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let rows: Vec<PgReadRow> = sqlx::query_as(READ_PG)
        .bind(ids)
        .bind(key_partners)
        .bind(key_names)
        .bind(to_ms(since))
        .fetch_all(conn)
        .await?;
    let mut batch = Batch {
        users: HashMap::with_capacity(ids.len()),
        answers: HashMap::new(),
    };
    let mut accounts: Vec<PgReadRow> = Vec::new();
    for r in rows {
        match r.kind {
            0 => {
                let (Ok(user_id), Ok(partner)) = (Uuid::parse_str(&r.t1), Uuid::parse_str(&r.t2))
                else {
                    continue;
                };
                batch.users.insert(
                    user_id,
                    LoadedUser {
                        partner,
                        source: UserSource::parse(&r.t3),
                        accounts: Vec::new(),
                    },
                );
            }
            1 => accounts.push(r),
            _ => {
                if let Some((key, answer)) = answer_of(AnswerRow {
                    partner_id: r.t1,
                    key: r.t2,
                    user_id: r.t3,
                    status: r.n1.unwrap_or_default(),
                    body: r.t4.unwrap_or_default(),
                    retry_after: r.n2,
                }) {
                    batch.answers.insert(key, answer);
                }
            }
        }
    }
    // Accounts come in no particular order; the rules sort their decisions by id.
    for r in accounts {
        let Some(user) = Uuid::parse_str(&r.t1)
            .ok()
            .and_then(|id| batch.users.get_mut(&id))
        else {
            continue;
        };
        user.accounts.push(AccountState {
            account_id: r.t2,
            consent_status: consent_status(&r.t3),
            consent_expires_at: r.n1.map(from_ms),
            last_transaction_refresh_date: r.n2.map(from_ms),
            in_flight_since: r.n3.map(from_ms),
        });
    }
    Ok(batch)
}

/// Keeps answers on PostgreSQL (see [`STORE_ANSWERS_PG`]), in (partner, key) order; whether
/// every one was stored.
async fn store_answers_pg(
    conn: &mut PgConnection,
    responses: &[(Uuid, String, StoredResponse)],
    now: DateTime<Utc>,
    keys_since: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if responses.is_empty() {
        return Ok(true);
    }
    // One answer per key (a batch keeps the first and replays it, so this is only a
    // guard: an upsert may not touch one row twice).
    let mut sorted: Vec<&(Uuid, String, StoredResponse)> = responses.iter().collect();
    // A uuid's order is its text's; the database's collation is byte order (C), as Rust's.
    sorted.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    sorted.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let n = sorted.len();
    let (mut partners, mut keys, mut users, mut statuses, mut bodies, mut retry_afters) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (partner, key, response) in sorted {
        partners.push(partner.to_string());
        keys.push(key.as_str());
        users.push(response.user_id.to_string());
        statuses.push(i64::from(response.status));
        bodies.push(response.body.as_str());
        retry_afters.push(response.retry_after.and_then(|s| i64::try_from(s).ok()));
    }
    let (stored,): (i64,) = sqlx::query_as(STORE_ANSWERS_PG)
        .bind(partners)
        .bind(keys)
        .bind(users)
        .bind(statuses)
        .bind(bodies)
        .bind(retry_afters)
        .bind(to_ms(now))
        .bind(to_ms(keys_since))
        .fetch_one(conn)
        .await?;
    Ok(usize::try_from(stored).is_ok_and(|s| s == n))
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
         WHERE u.id IN (SELECT value FROM json_each($1))",
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

/// A kept answer, by (partner, key); `None` when a stored value does not parse.
fn answer_of(r: AnswerRow) -> Option<((Uuid, String), StoredResponse)> {
    Some((
        (Uuid::parse_str(&r.partner_id).ok()?, r.key),
        StoredResponse {
            user_id: Uuid::parse_str(&r.user_id).ok()?,
            status: u16::try_from(r.status).ok()?,
            body: r.body,
            retry_after: r.retry_after.and_then(|s| u64::try_from(s).ok()),
        },
    ))
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
         WHERE created_at >= $2
           AND (partner_id, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1))",
    )
    .bind(json(keys)?)
    .bind(to_ms(since))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().filter_map(answer_of).collect())
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
