//! Refresh jobs and their items: the one way a job is created (any kind, any number at
//! once), and the reads of the API (a job and its accounts) and the portal (lists, timings).
//!
//! Creating jobs rides in a caller's write transaction of either backend ([`TxConn`]):
//! SQLite reads the rows as JSON (`json_each`), PostgreSQL as arrays (`unnest`), and both
//! write any number of jobs in one round trip.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::{Jobs, StoreError, json, page_of};
use crate::model::{ItemError, Job, JobItem, JobKind, JobStatus, from_ms, to_ms};

/// A job to create: one queued item per account.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The new job's id.
    pub job_id: Uuid,
    /// Why it exists.
    pub kind: JobKind,
    /// Whose.
    pub partner: Uuid,
    /// For which user.
    pub user_id: Uuid,
    /// The accounts' ids.
    pub accounts: Vec<String>,
    /// When it was triggered on its partner's clock (the sandbox may shift it): what its
    /// accounts' in-flight marker holds, which rule 2 compares with that partner's now.
    /// The job's own `created_at` is the server's time.
    pub triggered_at: DateTime<Utc>,
}

/// A job as a list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSummary {
    /// The job.
    pub job_id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// Why it exists.
    pub kind: JobKind,
    /// Where it is.
    pub status: JobStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its accounts.
    pub accounts: i64,
    /// Those that ended.
    pub done: i64,
}

/// One account of a job, with its timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemTimings {
    /// The account.
    pub account_id: String,
    /// Where its fetch is.
    pub state: JobStatus,
    /// Fetch attempts.
    pub attempts: i64,
    /// When a worker first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// New transactions.
    pub new_transactions: Option<i64>,
    /// Why it failed.
    pub error_code: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobSummaryRow {
    id: String,
    user_id: String,
    kind: String,
    status: String,
    created_at: i64,
    finished_at: Option<i64>,
    accounts: i64,
    done: i64,
}

impl JobSummaryRow {
    fn into_summary(self) -> Option<JobSummary> {
        Some(JobSummary {
            job_id: Uuid::parse_str(&self.id).ok()?,
            user_id: Uuid::parse_str(&self.user_id).ok()?,
            kind: JobKind::parse(&self.kind),
            status: JobStatus::parse(&self.status),
            created_at: from_ms(self.created_at),
            finished_at: self.finished_at.map(from_ms),
            accounts: self.accounts,
            done: self.done,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    account_id: String,
    state: String,
    attempts: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    new_transactions: Option<i64>,
    error_code: Option<String>,
    /// 0/1 (an integer column on both backends: PostgreSQL does not read a BIGINT as bool).
    error_retryable: Option<i64>,
}

const SUMMARY: &str = "SELECT j.id, j.user_id, j.kind, j.status, j.created_at, j.finished_at,
   (SELECT COUNT(*) FROM refresh_job_items i WHERE i.job_id = j.id) AS accounts,
   (SELECT COUNT(*) FROM refresh_job_items i WHERE i.job_id = j.id AND i.state IN ('SUCCEEDED', 'FAILED')) AS done
 FROM refresh_jobs j";

/// A write transaction (or its connection) of either backend, for the writes that ride in
/// a caller's transaction: [`insert`], `transactions::insert_many`, `transactions::held_by`.
/// Implemented for both backends' connections and transactions, so that a body of
/// `in_tx!` (compiled once per backend) calls them alike, with `&mut tx`.
pub(super) trait TxConn: Send {
    /// The connection, by backend.
    fn tx_conn(&mut self) -> TxConnRef<'_>;
}

/// A borrowed connection of one backend or the other.
pub(super) enum TxConnRef<'c> {
    /// SQLite's.
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL's.
    Postgres(&'c mut PgConnection),
}

impl TxConn for SqliteConnection {
    fn tx_conn(&mut self) -> TxConnRef<'_> {
        TxConnRef::Sqlite(self)
    }
}

impl TxConn for PgConnection {
    fn tx_conn(&mut self) -> TxConnRef<'_> {
        TxConnRef::Postgres(self)
    }
}

impl TxConn for Transaction<'_, Sqlite> {
    fn tx_conn(&mut self) -> TxConnRef<'_> {
        TxConnRef::Sqlite(self)
    }
}

impl TxConn for Transaction<'_, Postgres> {
    fn tx_conn(&mut self) -> TxConnRef<'_> {
        TxConnRef::Postgres(self)
    }
}

/// Inserts `jobs`, one queued item per account, and marks those accounts in flight (an
/// account already in flight keeps its trigger time: its fetch is not started twice),
/// inside the caller's transaction. Three statements whatever the number of jobs; with
/// `then_commit`, the `COMMIT` travels with them (one round trip to SQLite's thread).
async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
    then_commit: bool,
) -> Result<(), StoreError> {
    let job_rows: Vec<(String, String, String, &str)> = jobs
        .iter()
        .map(|j| {
            (
                j.job_id.to_string(),
                j.partner.to_string(),
                j.user_id.to_string(),
                j.kind.as_str(),
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
    let accounts: Vec<(&str, i64)> = jobs
        .iter()
        .flat_map(|job| {
            let at = to_ms(job.triggered_at);
            job.accounts.iter().map(move |a| (a.as_str(), at))
        })
        .collect();
    // Each statement names every parameter, in order, through the same `p` CTE: sqlx binds
    // a statement's parameters by name only when none of $1..$N is missing from it.
    let sql = "WITH p(jobs, items, accounts, now) AS (SELECT $1, $2, $3, $4)
         INSERT INTO refresh_jobs (id, partner_id, user_id, kind, status, created_at)
           SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'QUEUED', p.now FROM p, json_each(p.jobs);
         WITH p(jobs, items, accounts, now) AS (SELECT $1, $2, $3, $4)
         INSERT INTO refresh_job_items (job_id, account_id, state)
           SELECT value ->> 0, value ->> 1, 'QUEUED' FROM p, json_each(p.items);
         WITH p(jobs, items, accounts, now) AS (SELECT $1, $2, $3, $4)
         UPDATE accounts SET in_flight_since = t.at
           FROM (SELECT value ->> 0 AS id, value ->> 1 AS at FROM p, json_each(p.accounts)) AS t
           WHERE accounts.id = t.id AND accounts.in_flight_since IS NULL;";
    let sql = if then_commit {
        format!("{sql}\nCOMMIT;")
    } else {
        sql.to_owned()
    };
    sqlx::query(&sql)
        .bind(json(&job_rows)?)
        .bind(json(&item_rows)?)
        .bind(json(&accounts)?)
        .bind(to_ms(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// PostgreSQL's [`insert_jobs`]: one statement, the rows as arrays. The accounts are
/// marked in id order (`$8`/`$9`, sorted by the caller; a nested loop over `unnest` walks
/// them in that order), as every other writer of several accounts locks them, so two
/// transactions marking overlapping accounts queue instead of deadlocking. A plain
/// `UPDATE .. FROM unnest` rather than a locking `SELECT .. ORDER BY id` joined back: that
/// probed each account twice and sorted (~25 % of the update). Were the planner ever to walk
/// the array out of order, PostgreSQL would break the deadlock by failing one transaction
/// (a refresh batch runs again; a scheduler pass, at its next tick). `UPDATE` takes the
/// `FOR NO KEY UPDATE` row lock, which the foreign keys' `KEY SHARE` locks do not wait
/// for. Unlike SQLite's, these
/// tables have no foreign keys on PostgreSQL: this statement is their one writer, and the
/// row-by-row checks cost ~40 % of it (migration 0002 says why).
const INSERT_JOBS_PG: &str = "WITH new_jobs AS (
       INSERT INTO refresh_jobs (id, partner_id, user_id, kind, status, created_at)
       SELECT r.id, r.partner_id, r.user_id, r.kind, 'QUEUED', $5
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r(id, partner_id, user_id, kind)
     ), new_items AS (
       INSERT INTO refresh_job_items (job_id, account_id, state)
       SELECT r.job_id, r.account_id, 'QUEUED' FROM unnest($6::text[], $7::text[]) AS r(job_id, account_id)
     )
     UPDATE accounts SET in_flight_since = m.at
     FROM unnest($8::text[], $9::bigint[]) AS m(id, at)
     WHERE accounts.id = m.id AND accounts.in_flight_since IS NULL";

/// [`insert_jobs`] on PostgreSQL (see [`INSERT_JOBS_PG`]); the caller commits.
async fn insert_jobs_pg(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let n = jobs.len();
    let (mut ids, mut partners, mut users, mut kinds) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let items = jobs.iter().map(|j| j.accounts.len()).sum();
    let (mut item_jobs, mut item_accounts, mut marks) = (
        Vec::with_capacity(items),
        Vec::with_capacity(items),
        Vec::with_capacity(items),
    );
    for job in jobs {
        let id = job.job_id.to_string();
        let at = to_ms(job.triggered_at);
        for account in &job.accounts {
            item_jobs.push(id.clone());
            item_accounts.push(account.as_str());
            marks.push((account.as_str(), at));
        }
        ids.push(id);
        partners.push(job.partner.to_string());
        users.push(job.user_id.to_string());
        kinds.push(job.kind.as_str());
    }
    // Marked in id order (see INSERT_JOBS_PG). An account is in one job of a batch at most;
    // were it in two, one mark would stand (an `UPDATE` changes a row once), as on SQLite.
    marks.sort_by(|a, b| a.0.cmp(b.0));
    let (mark_accounts, mark_times): (Vec<&str>, Vec<i64>) = marks.into_iter().unzip();
    sqlx::query(INSERT_JOBS_PG)
        .bind(ids)
        .bind(partners)
        .bind(users)
        .bind(kinds)
        .bind(to_ms(now))
        .bind(item_jobs)
        .bind(item_accounts)
        .bind(mark_accounts)
        .bind(mark_times)
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates `jobs` inside the caller's transaction, on either backend (see [`insert_jobs`]).
pub(super) async fn insert<C: TxConn + ?Sized>(
    conn: &mut C,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    match conn.tx_conn() {
        TxConnRef::Sqlite(conn) => insert_jobs(conn, jobs, now, false).await,
        TxConnRef::Postgres(conn) => insert_jobs_pg(conn, jobs, now).await,
    }
}

/// Creates `jobs` and commits the transaction begun by hand on `conn`, in one round trip
/// (SQLite's trick of carrying `COMMIT` in the statement; PostgreSQL's refresh batch
/// inserts with [`insert`] and commits its transaction).
pub(super) async fn insert_and_commit(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(());
    }
    insert_jobs(conn, jobs, now, true).await
}

impl Jobs<'_> {
    /// The job, if it is the user's and the user `partner`'s.
    pub async fn get(
        &self,
        partner: Uuid,
        user_id: Uuid,
        job_id: Uuid,
    ) -> Result<Option<Job>, StoreError> {
        let Some(summary) = self.summary(partner, job_id).await? else {
            return Ok(None);
        };
        if summary.user_id != user_id {
            return Ok(None);
        }
        let items: Vec<ItemRow> = self.item_rows(job_id).await?;
        let accounts = items
            .into_iter()
            .filter_map(|it| {
                Some(JobItem {
                    account_id: Uuid::parse_str(&it.account_id).ok()?,
                    state: JobStatus::parse(&it.state),
                    finished_at: it.finished_at.map(from_ms),
                    new_transactions: it.new_transactions,
                    error: it.error_code.map(|code| ItemError {
                        code,
                        retryable: it.error_retryable.is_some_and(|r| r != 0),
                    }),
                })
            })
            .collect();
        Ok(Some(Job {
            job_id,
            user_id,
            created_at: summary.created_at,
            status: summary.status,
            accounts,
        }))
    }

    async fn item_rows(&self, job_id: Uuid) -> Result<Vec<ItemRow>, StoreError> {
        Ok(on_read!(self, |c| {
            sqlx::query_as(
                "SELECT account_id, state, attempts, started_at, finished_at, new_transactions, error_code, error_retryable
                 FROM refresh_job_items WHERE job_id = $1 ORDER BY account_id",
            )
            .bind(job_id.to_string())
            .fetch_all(c)
            .await?
        }))
    }

    /// One of `partner`'s jobs, as lists show it.
    pub async fn summary(
        &self,
        partner: Uuid,
        job_id: Uuid,
    ) -> Result<Option<JobSummary>, StoreError> {
        let sql = format!("{SUMMARY} WHERE j.partner_id = $1 AND j.id = $2");
        let row: Option<JobSummaryRow> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(partner.to_string())
                .bind(job_id.to_string())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(JobSummaryRow::into_summary))
    }

    /// The accounts of a job with their timings, by account id.
    pub async fn items(&self, job_id: Uuid) -> Result<Vec<ItemTimings>, StoreError> {
        Ok(self
            .item_rows(job_id)
            .await?
            .into_iter()
            .map(|it| ItemTimings {
                account_id: it.account_id,
                state: JobStatus::parse(&it.state),
                attempts: it.attempts,
                started_at: it.started_at.map(from_ms),
                finished_at: it.finished_at.map(from_ms),
                new_transactions: it.new_transactions,
                error_code: it.error_code,
            })
            .collect())
    }

    /// A page of `partner`'s jobs (optionally one user's), newest first; and whether there is more.
    pub async fn page(
        &self,
        partner: Uuid,
        user: Option<Uuid>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<JobSummary>, bool), StoreError> {
        let sql = format!(
            "{SUMMARY} WHERE j.partner_id = $1 AND ($2 IS NULL OR j.user_id = $2)
             ORDER BY j.created_at DESC, j.id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<JobSummaryRow> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(partner.to_string())
                .bind(user.map(|u| u.to_string()))
                .bind(i64::from(limit) + 1)
                .bind(i64::from(offset))
                .fetch_all(c)
                .await?
        });
        Ok(page_of(rows, limit, JobSummaryRow::into_summary))
    }

    /// The newest job of a user that is still open.
    pub async fn open_of(&self, partner: Uuid, user: Uuid) -> Result<Option<Uuid>, StoreError> {
        let row: Option<(String,)> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT id FROM refresh_jobs WHERE partner_id = $1 AND user_id = $2 AND status IN ('QUEUED', 'RUNNING')
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(partner.to_string())
            .bind(user.to_string())
            .fetch_optional(c)
            .await?
        });
        Ok(row.and_then(|(id,)| Uuid::parse_str(&id).ok()))
    }
}
