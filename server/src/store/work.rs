//! The refresh work queue: claiming job items with a lease, and ending them — ingestion,
//! the account's new state, the job's status and the events — in one transaction each.
//!
//! SQLite has one writer, so each of these transactions sees nothing change between its
//! reads and its writes. PostgreSQL runs them at once, from several replicas, without a
//! global lock; what keeps them apart:
//!
//! - Claims: an account is claimed whole (every open item of it) by one worker. A claim
//!   picks candidate accounts and takes each one's claim lock, an advisory transaction lock
//!   keyed by the account ([`CLAIM_LOCKS`]) with `pg_try_advisory_xact_lock`: an account
//!   another claim is taking right now is skipped, not waited for (`SKIP LOCKED`, at the
//!   grain of accounts; skipping single item rows could split an account between two
//!   claims). It then locks the picked accounts' open items (`FOR UPDATE`, which reads
//!   their latest versions) and keeps only accounts none of whose items is under a live
//!   lease: a claim that committed after this one's snapshot is seen there. Leases are as
//!   on SQLite, so a killed replica's accounts are taken again once its leases expire.
//! - Endings: the items a worker ends are locked first (`FOR UPDATE`), and only accounts
//!   whose items still name it as their lease owner are ended; a worker that lost its
//!   lease writes nothing for them. A job's status is computed after its row is locked (in
//!   a statement of its own, so with a snapshot taken after the lock): two workers ending
//!   a job's last two accounts at once cannot both see the other's item still running.
//! - Lock order: items (by account, job), partners (by id: the quota's read and the
//!   trigger that counts transactions), then the jobs and the accounts (each by id; no
//!   transaction here locks accounts before jobs), then the event log's lock
//!   ([`EVENT_LOG_LOCK`], right before the events' insert, to commit). Every multi-row
//!   lock is taken in id order, so these transactions queue behind each other instead of
//!   deadlocking. Lease extensions skip items that are locked (being ended or claimed:
//!   they need no extension).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::accounts::AccountAtBank;
use super::jobs::{self, NewJob};
use super::{Db, EVENT_LOG_LOCK, StoreError, WorkQueue, json, new_id};
use crate::model::{JobKind, from_ms, to_ms};

/// The key space of the claim locks on PostgreSQL: the first key of the two-key advisory
/// locks (`pg_try_advisory_xact_lock(CLAIM_LOCKS, hashtext(account_id))`), a space apart
/// from the one-key locks of the store ([`super::SERIAL_LOCK`], [`EVENT_LOG_LOCK`]).
/// Two accounts whose ids hash alike share a lock: one is skipped by a claim while the
/// other is being claimed, no more. ("frsh" in ASCII.)
const CLAIM_LOCKS: i32 = 0x6672_7368;

/// Whose accounts a scheduling pass looks at.
#[derive(Clone, Copy, Debug)]
pub enum PartnerScope<'a> {
    /// Only this partner's.
    Only(Uuid),
    /// Every partner's but these.
    AllBut(&'a [Uuid]),
}

/// An account whose open job items a worker now holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedAccount {
    /// The account.
    pub account_id: String,
    /// Its user.
    pub user_id: String,
    /// The user's partner.
    pub partner_id: String,
    /// How its bank knows it.
    pub bank: AccountAtBank,
    /// When it was last ingested: the fetch asks the bank for what is newer.
    pub last_refresh: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    user_id: String,
    partner_id: String,
    bank_id: String,
    bank_account_id: String,
    bank_consent_id: String,
    last_transaction_refresh_date: Option<i64>,
}

impl ClaimRow {
    fn into_claimed(self) -> ClaimedAccount {
        ClaimedAccount {
            account_id: self.id,
            user_id: self.user_id,
            partner_id: self.partner_id,
            bank: AccountAtBank {
                bank_id: self.bank_id,
                account_id: self.bank_account_id,
                consent_id: self.bank_consent_id,
            },
            last_refresh: self.last_transaction_refresh_date.map(from_ms),
        }
    }
}

#[derive(sqlx::FromRow)]
struct DueAccount {
    id: String,
    user_id: String,
    partner_id: String,
}

/// When, and under which quota, a fetch's items end ([`Work::finish`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    /// The server's time: for the rows the server keeps time by (items' and jobs' ends,
    /// the events' `created_at` that webhook schedules and retention read).
    pub now: DateTime<Utc>,
    /// The partner's time (its sandbox clock may be shifted): for the data the partner
    /// sees and the rules read (`lastTransactionRefreshDate`, the transactions' `created`,
    /// the event's payload).
    pub as_of: DateTime<Utc>,
    /// The most transactions one partner's users may hold (the sandbox's quota), if any.
    pub transactions_quota: Option<u32>,
}

impl Ending {
    /// At `now` for server and partner alike, with no quota.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            as_of: now,
            transactions_quota: None,
        }
    }
}

/// What a successful fetch brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetch<'a> {
    /// The transactions (duplicates of stored ones are skipped).
    pub transactions: &'a [crate::bank::FetchedTransaction],
    /// The account's balance now, when the bank gave it.
    pub balance: Option<&'a str>,
}

impl<'a> Fetch<'a> {
    /// Transactions without a balance.
    pub fn transactions(transactions: &'a [crate::bank::FetchedTransaction]) -> Self {
        Self {
            transactions,
            balance: None,
        }
    }
}

/// The error code of an item whose fetch would take its partner past the sandbox's quota.
pub const QUOTA_EXCEEDED: &str = "SANDBOX_QUOTA_EXCEEDED";

/// How an account's fetch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Fetched: these transactions (duplicates of stored ones are skipped), and the
    /// balance when the bank gave one.
    Fetched(Fetch<'a>),
    /// Failed with this code; `consent_revoked` also expires the account's consent.
    Failed {
        /// `BANK_UNAVAILABLE`, ...
        code: &'static str,
        /// Whether asking again may succeed.
        retryable: bool,
        /// The bank said the consent was revoked.
        consent_revoked: bool,
    },
}

/// One account's fetch, ended: what [`WorkQueue::finish_many`] commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended<'a> {
    /// The account, as claimed.
    pub account: &'a ClaimedAccount,
    /// How its fetch ended.
    pub outcome: Outcome<'a>,
    /// When, and under which quota.
    pub ending: Ending,
}

/// The event an ended item produces: its type follows the job's kind (D•One's names; the
/// `.failed` ones are ours), and only on-demand events carry the `jobId`.
fn event(
    kind: JobKind,
    job_id: &str,
    account: &ClaimedAccount,
    outcome: &Outcome<'_>,
    new_transactions: i64,
    now: DateTime<Utc>,
) -> (String, serde_json::Value) {
    let family = kind.event_family();
    let mut payload =
        serde_json::json!({ "userId": account.user_id, "accountId": account.account_id });
    if kind == JobKind::OnDemand {
        payload["jobId"] = serde_json::json!(job_id);
    }
    let result = match outcome {
        Outcome::Fetched(_) => {
            payload["lastTransactionRefreshDate"] =
                serde_json::json!(freshet_rules::format_timestamp(now));
            payload["newTransactions"] = serde_json::json!(new_transactions);
            "succeeded"
        }
        Outcome::Failed {
            code, retryable, ..
        } => {
            payload["error"] = serde_json::json!({ "code": code, "retryable": retryable });
            "failed"
        }
    };
    (
        format!("v1.account_transactions.{family}.{result}"),
        payload,
    )
}

/// PostgreSQL's claim, first statement: candidate accounts (as SQLite picks them, from a
/// bounded number of open items: `$4`), and up to `$2` of them whose claim lock this
/// transaction takes now (the others are being claimed right now: skipped). Written so that
/// its plan does not depend on the statistics of a queue that churns: the open items
/// stream from the partial index (queued, then expired leases) and each is checked with
/// index probes (`LATERAL .. LIMIT 1`, a scalar subquery) rather than joins the planner
/// might turn into scans of everything open.
const CLAIM_PICK_PG: &str = "WITH candidates AS MATERIALIZED (
       SELECT o.account_id FROM (
           (SELECT account_id FROM refresh_job_items WHERE state = 'QUEUED')
           UNION ALL
           (SELECT account_id FROM refresh_job_items WHERE state = 'RUNNING' AND lease_expires_at < $1)
         ) AS o
       LEFT JOIN LATERAL (SELECT 1 AS live FROM refresh_job_items l
           WHERE l.account_id = o.account_id AND l.state = 'RUNNING' AND l.lease_expires_at >= $1
           LIMIT 1) AS lease ON true
       WHERE lease.live IS NULL
         AND (SELECT a.bank_id FROM accounts a WHERE a.id = o.account_id) <> ALL($3)
       LIMIT $4
     )
     SELECT c.account_id FROM (SELECT DISTINCT account_id FROM candidates) AS c
     WHERE pg_try_advisory_xact_lock($5, hashtext(c.account_id))
     LIMIT $2";

/// PostgreSQL's claim, second statement: the open items of the picked accounts (`$1`),
/// locked in (account, job) order and read as they are now (a claim that committed after
/// the first statement's snapshot shows here as a live lease).
const CLAIM_LOCK_PG: &str =
    "SELECT account_id, job_id, state, lease_expires_at FROM refresh_job_items
     WHERE account_id = ANY($1) AND state IN ('QUEUED', 'RUNNING')
     ORDER BY account_id, job_id
     FOR UPDATE";

/// PostgreSQL's claim, third statement: the items locked by the second (`$4`, `$5`) leased,
/// their queued jobs running (locked in id order), and the accounts read.
const CLAIM_TAKE_PG: &str = "WITH taken AS (
       UPDATE refresh_job_items AS i SET state = 'RUNNING', lease_owner = $1, lease_expires_at = $2,
         attempts = i.attempts + 1, started_at = COALESCE(i.started_at, $3)
       FROM unnest($4::text[], $5::text[]) AS r(job_id, account_id)
       WHERE i.job_id = r.job_id AND i.account_id = r.account_id
     ), running AS (
       UPDATE refresh_jobs SET status = 'RUNNING'
       FROM (SELECT id FROM refresh_jobs WHERE id = ANY($6) AND status = 'QUEUED'
             ORDER BY id FOR NO KEY UPDATE) AS q
       WHERE refresh_jobs.id = q.id AND refresh_jobs.status = 'QUEUED'
     )
     SELECT a.id, a.user_id, u.partner_id, a.bank_id, a.bank_account_id, a.bank_consent_id,
       a.last_transaction_refresh_date
     FROM accounts a JOIN users u ON u.id = a.user_id
     WHERE a.id = ANY($7)";

/// PostgreSQL's ending, first statement: the open items of the ended accounts (queued, or
/// running under this worker's lease: `$2`), locked in (account, job) order and read as
/// they are now. An account none of whose items runs under the lease was lost meanwhile.
/// The job's kind is a scalar subquery (one primary-key probe per item), not a join that
/// the planner could turn into a scan of every job ever created.
const FINISH_LOCK_PG: &str = "SELECT i.account_id, i.job_id,
       (SELECT j.kind FROM refresh_jobs j WHERE j.id = i.job_id) AS kind, i.state
     FROM refresh_job_items i
     WHERE i.account_id = ANY($1)
       AND (i.state = 'QUEUED' OR (i.state = 'RUNNING' AND i.lease_owner = $2))
     ORDER BY i.account_id, i.job_id
     FOR UPDATE";

/// PostgreSQL's ending, after the transactions: the jobs' rows locked (in id order, for
/// the next statement), the accounts moved (locked in id order) and the items ended.
const FINISH_END_PG: &str = "WITH jobs_locked AS MATERIALIZED (
       SELECT id FROM refresh_jobs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE
     ), ended_accounts AS (
       UPDATE accounts SET
         last_transaction_refresh_date = CASE WHEN r.fetched THEN r.as_of ELSE accounts.last_transaction_refresh_date END,
         balance = CASE WHEN r.fetched THEN COALESCE(r.new_balance, accounts.balance) ELSE accounts.balance END,
         consent_status = CASE WHEN r.revoked THEN 'EXPIRED' ELSE accounts.consent_status END,
         in_flight_since = NULL
       FROM (SELECT a.id, e.fetched, e.as_of, e.new_balance, e.revoked
             FROM accounts a
             JOIN unnest($2::text[], $3::boolean[], $4::bigint[], $5::text[], $6::boolean[])
               AS e(id, fetched, as_of, new_balance, revoked) ON a.id = e.id
             ORDER BY a.id FOR NO KEY UPDATE OF a) AS r
       WHERE accounts.id = r.id
     ), ended_items AS (
       UPDATE refresh_job_items SET state = r.state, finished_at = r.at, new_transactions = r.n,
         error_code = r.code, error_retryable = r.retryable, lease_owner = NULL, lease_expires_at = NULL
       FROM unnest($7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[])
         AS r(job, account, state, at, n, code, retryable)
       WHERE refresh_job_items.job_id = r.job AND refresh_job_items.account_id = r.account
     )
     SELECT COUNT(*) FROM jobs_locked";

/// PostgreSQL's ending, last statement: the jobs' states (its snapshot is taken after the
/// jobs' locks, so every item another worker ended before us is seen ended), then the
/// event log's lock and the events, in the order given (their webhook deliveries by the
/// fan-out trigger).
const FINISH_SETTLE_PG: &str = "WITH settled AS (
       UPDATE refresh_jobs SET
         status = CASE
           WHEN EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state IN ('QUEUED', 'RUNNING')) THEN 'RUNNING'
           WHEN NOT EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state = 'FAILED') THEN 'SUCCEEDED'
           WHEN NOT EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state = 'SUCCEEDED') THEN 'FAILED'
           ELSE 'PARTIALLY_FAILED' END,
         finished_at = CASE
           WHEN EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state IN ('QUEUED', 'RUNNING')) THEN NULL
           ELSE $2 END
       WHERE id = ANY($1)
     ), event_log AS MATERIALIZED (SELECT pg_advisory_xact_lock($3))
     INSERT INTO events (id, partner_id, type, payload, created_at)
     SELECT e.id, e.partner_id, e.type, e.payload, e.created_at
     FROM event_log, unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
       WITH ORDINALITY AS e(id, partner_id, type, payload, created_at, ord)
     ORDER BY e.ord";

/// How an ended account's row moves.
struct AccountEnd<'a> {
    id: &'a str,
    fetched: bool,
    as_of: Option<i64>,
    balance: Option<&'a str>,
    revoked: bool,
}

/// How an ended item's row ends.
struct ItemEnd<'a> {
    job: &'a str,
    account: &'a str,
    state: &'static str,
    at: i64,
    new_transactions: Option<i64>,
    code: Option<&'static str>,
    retryable: Option<i32>,
}

/// An event to append.
struct EventEnd<'a> {
    id: String,
    partner: &'a str,
    event_type: String,
    payload: String,
    at: i64,
}

/// Everything an ending writes after the transactions, whichever the backend.
struct Endings<'a> {
    accounts: Vec<AccountEnd<'a>>,
    items: Vec<ItemEnd<'a>>,
    events: Vec<EventEnd<'a>>,
    /// The jobs touched, in first-seen order.
    jobs: Vec<&'a str>,
    /// The latest server time of the batch: the jobs' `finished_at`.
    last_now: DateTime<Utc>,
}

/// The partners whose quota a batch checks (in first-seen order): those of fetches that
/// brought transactions under a quota.
fn quota_partners<'a>(ended: &[&'a Ended<'_>]) -> Vec<&'a str> {
    let mut partners: Vec<&str> = Vec::new();
    for e in ended {
        if let (Outcome::Fetched(fetched), Some(_)) = (&e.outcome, e.ending.transactions_quota)
            && !fetched.transactions.is_empty()
            && !partners.contains(&e.account.partner_id.as_str())
        {
            partners.push(&e.account.partner_id);
        }
    }
    partners
}

/// The outcomes after the sandbox's quota, per partner, counting what this batch stores as
/// it goes from `held` (what each partner of [`quota_partners`] held before).
fn apply_quota<'e>(ended: &[&Ended<'e>], mut held: HashMap<String, i64>) -> Vec<Outcome<'e>> {
    let mut outcomes: Vec<Outcome<'e>> = Vec::with_capacity(ended.len());
    for e in ended {
        let outcome = match (&e.outcome, e.ending.transactions_quota) {
            (Outcome::Fetched(fetched), Some(quota)) if !fetched.transactions.is_empty() => {
                let partner = e.account.partner_id.as_str();
                let before = held.get(partner).copied().unwrap_or(0);
                let after = before + fetched.transactions.len() as i64;
                if after > i64::from(quota) {
                    Outcome::Failed {
                        code: QUOTA_EXCEEDED,
                        retryable: false,
                        consent_revoked: false,
                    }
                } else {
                    held.insert(partner.to_owned(), after);
                    e.outcome.clone()
                }
            }
            (outcome, _) => outcome.clone(),
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// What each ended account stores: its fetched transactions, unless its fetch failed.
fn ingest_batches<'a>(
    ended: &[&'a Ended<'a>],
    outcomes: &[Outcome<'a>],
) -> Vec<super::transactions::Batch<'a>> {
    ended
        .iter()
        .zip(outcomes)
        .map(|(e, outcome)| super::transactions::Batch {
            account_id: &e.account.account_id,
            user_id: &e.account.user_id,
            transactions: match outcome {
                Outcome::Fetched(fetch) => fetch.transactions,
                Outcome::Failed { .. } => &[],
            },
            created: e.ending.as_of,
        })
        .collect()
}

/// The rows an ending writes after the transactions: each account's new state, each open
/// item of it ended, and one event per item, in the order of the batch (items in job
/// order). `items` are the open items, (account, job, kind), of the held accounts.
fn endings<'a>(
    ended: &[&'a Ended<'a>],
    outcomes: &'a [Outcome<'a>],
    items: &'a [(String, String, String)],
    new_counts: &[u64],
) -> Endings<'a> {
    let accounts = ended
        .iter()
        .zip(outcomes)
        .map(|(e, outcome)| match outcome {
            Outcome::Fetched(fetch) => AccountEnd {
                id: &e.account.account_id,
                fetched: true,
                as_of: Some(to_ms(e.ending.as_of)),
                balance: fetch.balance,
                revoked: false,
            },
            Outcome::Failed {
                consent_revoked, ..
            } => AccountEnd {
                id: &e.account.account_id,
                fetched: false,
                as_of: None,
                balance: None,
                revoked: *consent_revoked,
            },
        })
        .collect();
    let mut item_rows: Vec<ItemEnd<'a>> = Vec::new();
    let mut events: Vec<EventEnd<'a>> = Vec::new();
    let mut jobs: Vec<&str> = Vec::new();
    let mut seen_jobs: HashSet<&str> = HashSet::new();
    // Each account's open items (jobs), in job order.
    let mut items_of: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for (account, job_id, kind) in items {
        items_of
            .entry(account.as_str())
            .or_default()
            .push((job_id.as_str(), kind.as_str()));
    }
    let mut last_now = ended[0].ending.now;
    for ((e, outcome), new_transactions) in ended.iter().zip(outcomes).zip(new_counts) {
        let new_transactions = i64::try_from(*new_transactions).unwrap_or(0);
        let (state, code, retryable) = match outcome {
            Outcome::Fetched(_) => ("SUCCEEDED", None, None),
            Outcome::Failed {
                code, retryable, ..
            } => ("FAILED", Some(*code), Some(i32::from(*retryable))),
        };
        last_now = last_now.max(e.ending.now);
        for &(job_id, kind) in items_of
            .get(e.account.account_id.as_str())
            .map_or(&[][..], Vec::as_slice)
        {
            item_rows.push(ItemEnd {
                job: job_id,
                account: &e.account.account_id,
                state,
                at: to_ms(e.ending.now),
                new_transactions: (state == "SUCCEEDED").then_some(new_transactions),
                code,
                retryable,
            });
            if seen_jobs.insert(job_id) {
                jobs.push(job_id);
            }
            let (event_type, payload) = event(
                JobKind::parse(kind),
                job_id,
                e.account,
                outcome,
                new_transactions,
                e.ending.as_of,
            );
            events.push(EventEnd {
                id: Uuid::new_v4().to_string(),
                partner: &e.account.partner_id,
                event_type,
                payload: payload.to_string(),
                at: to_ms(e.ending.now),
            });
        }
    }
    Endings {
        accounts,
        items: item_rows,
        events,
        jobs,
        last_now,
    }
}

/// The accounts due for a scheduled refresh as jobs: one per user (the rows come ordered
/// by user).
fn scheduled_jobs(due: &[DueAccount], as_of: DateTime<Utc>) -> Vec<NewJob> {
    let mut new_jobs: Vec<NewJob> = Vec::new();
    for a in due {
        let (Ok(user_id), Ok(partner)) =
            (Uuid::parse_str(&a.user_id), Uuid::parse_str(&a.partner_id))
        else {
            continue;
        };
        match new_jobs.last_mut() {
            Some(job) if job.user_id == user_id => job.accounts.push(a.id.clone()),
            _ => new_jobs.push(NewJob {
                job_id: new_id(),
                kind: JobKind::Scheduled,
                partner,
                user_id,
                accounts: vec![a.id.clone()],
                triggered_at: as_of,
            }),
        }
    }
    new_jobs
}

/// Writes `endings` on PostgreSQL ([`FINISH_END_PG`], [`FINISH_SETTLE_PG`]); the caller
/// commits.
async fn write_endings_pg(
    conn: &mut PgConnection,
    endings: &Endings<'_>,
) -> Result<(), StoreError> {
    let a = &endings.accounts;
    sqlx::query(FINISH_END_PG)
        .bind(&endings.jobs)
        .bind(a.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.fetched).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.as_of).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.balance).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.revoked).collect::<Vec<_>>())
        .bind(endings.items.iter().map(|r| r.job).collect::<Vec<_>>())
        .bind(endings.items.iter().map(|r| r.account).collect::<Vec<_>>())
        .bind(endings.items.iter().map(|r| r.state).collect::<Vec<_>>())
        .bind(endings.items.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(
            endings
                .items
                .iter()
                .map(|r| r.new_transactions)
                .collect::<Vec<_>>(),
        )
        .bind(endings.items.iter().map(|r| r.code).collect::<Vec<_>>())
        .bind(
            endings
                .items
                .iter()
                .map(|r| r.retryable.map(i64::from))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    let e = &endings.events;
    sqlx::query(FINISH_SETTLE_PG)
        .bind(&endings.jobs)
        .bind(to_ms(endings.last_now))
        .bind(EVENT_LOG_LOCK)
        .bind(e.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.partner).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl WorkQueue<'_> {
    /// Claims up to `limit` accounts that have a job item waiting (or a lease that ran out),
    /// for `owner` until `lease_until`, none of them at a bank of `skip` (banks whose share
    /// of calls is taken: their work waits in the queue, not in a worker). Every open item
    /// of a claimed account is taken: one fetch ends them all, so an account in two jobs is
    /// not fetched twice; an account another worker holds a live lease on is never taken.
    /// A few statements, whatever the number claimed. On PostgreSQL, claims of several
    /// workers and replicas run at once and skip each other's accounts (see the module's
    /// doc), so a claim may return fewer than there are waiting. (By value: the handle is a
    /// copy of a reference, so `store.work().claim(..)` may be polled after its statement,
    /// as `tokio::join!` does.)
    pub async fn claim(
        self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<ClaimedAccount>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = match &self.db {
            Db::Sqlite { .. } => {
                self.claim_sqlite(owner, now, lease_until, limit, skip)
                    .await?
            }
            Db::Postgres { .. } => self.claim_pg(owner, now, lease_until, limit, skip).await?,
        };
        Ok(rows.into_iter().map(ClaimRow::into_claimed).collect())
    }

    async fn claim_sqlite(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<ClaimRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let claimed: Vec<(String, String)> = sqlx::query_as(
            "WITH picked AS (
               SELECT DISTINCT i.account_id FROM refresh_job_items i
               JOIN accounts a ON a.id = i.account_id
               WHERE (i.state = 'QUEUED' OR (i.state = 'RUNNING' AND i.lease_expires_at < $1))
                 AND a.bank_id NOT IN (SELECT value FROM json_each($3))
                 AND NOT EXISTS (SELECT 1 FROM refresh_job_items l
                   WHERE l.account_id = i.account_id AND l.state = 'RUNNING' AND l.lease_expires_at >= $1)
               LIMIT $2
             )
             UPDATE refresh_job_items SET state = 'RUNNING', lease_owner = $4, lease_expires_at = $5,
               attempts = attempts + 1, started_at = COALESCE(started_at, $1)
             WHERE account_id IN (SELECT account_id FROM picked) AND state IN ('QUEUED', 'RUNNING')
             RETURNING account_id, job_id",
        )
        .bind(to_ms(now))
        .bind(limit)
        .bind(json(skip)?)
        .bind(owner)
        .bind(to_ms(lease_until))
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let jobs: Vec<&str> = claimed.iter().map(|(_, job)| job.as_str()).collect();
        sqlx::query(
            "UPDATE refresh_jobs SET status = 'RUNNING' WHERE status = 'QUEUED'
               AND id IN (SELECT value FROM json_each($1))",
        )
        .bind(json(&jobs)?)
        .execute(&mut *tx)
        .await?;
        let mut accounts: Vec<&str> = claimed.iter().map(|(a, _)| a.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let rows: Vec<ClaimRow> = sqlx::query_as(
            "SELECT a.id, a.user_id, u.partner_id, a.bank_id, a.bank_account_id, a.bank_consent_id,
               a.last_transaction_refresh_date
             FROM accounts a JOIN users u ON u.id = a.user_id
             WHERE a.id IN (SELECT value FROM json_each($1))",
        )
        .bind(json(&accounts)?)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// PostgreSQL's claim: [`CLAIM_PICK_PG`], [`CLAIM_LOCK_PG`], then [`CLAIM_TAKE_PG`] for
    /// the accounts none of whose open items is under a live lease now.
    async fn claim_pg(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<ClaimRow>, StoreError> {
        let now_ms = to_ms(now);
        let mut tx = self.begin_pg().await?;
        // Items per account are few (one per open job): four times the limit in items
        // finds enough accounts, with some to spare for those being claimed right now.
        let candidates = i64::from(limit) * 4 + 16;
        let picked: Vec<String> = sqlx::query_scalar(CLAIM_PICK_PG)
            .bind(now_ms)
            .bind(i64::from(limit))
            .bind(skip)
            .bind(candidates)
            .bind(CLAIM_LOCKS)
            .fetch_all(&mut *tx)
            .await?;
        if picked.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let open: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(CLAIM_LOCK_PG)
            .bind(&picked)
            .fetch_all(&mut *tx)
            .await?;
        // Claimed by another worker since the first statement's snapshot: a live lease now.
        let leased: HashSet<&str> = open
            .iter()
            .filter(|(_, _, state, until)| state == "RUNNING" && until.is_some_and(|u| u >= now_ms))
            .map(|(account, ..)| account.as_str())
            .collect();
        let take: Vec<&(String, String, String, Option<i64>)> = open
            .iter()
            .filter(|(account, ..)| !leased.contains(account.as_str()))
            .collect();
        if take.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let item_jobs: Vec<&str> = take.iter().map(|(_, job, ..)| job.as_str()).collect();
        let item_accounts: Vec<&str> = take.iter().map(|(account, ..)| account.as_str()).collect();
        let mut jobs = item_jobs.clone();
        jobs.sort_unstable();
        jobs.dedup();
        let mut accounts = item_accounts.clone();
        accounts.dedup();
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM_TAKE_PG)
            .bind(owner)
            .bind(to_ms(lease_until))
            .bind(now_ms)
            .bind(&item_jobs)
            .bind(&item_accounts)
            .bind(&jobs)
            .bind(&accounts)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Extends the leases `owner` holds on `accounts` to `until` (one statement): a worker's accounts
    /// waiting for their bank's share, or retrying, stay its own while it lives. On
    /// PostgreSQL items that are locked right now are skipped (`SKIP LOCKED`): they are
    /// being ended, or claimed by another worker because the lease had run out, and need
    /// no extension; waiting for them could deadlock with this worker's own ending, which
    /// locks them in another order.
    pub async fn extend_leases(
        &self,
        owner: &str,
        accounts: &[String],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = match &self.db {
            Db::Sqlite { write, .. } => {
                sqlx::query(
                    "UPDATE refresh_job_items SET lease_expires_at = $2
                     WHERE state = 'RUNNING' AND lease_owner = $1
                       AND account_id IN (SELECT value FROM json_each($3))",
                )
                .bind(owner)
                .bind(to_ms(until))
                .bind(json(accounts)?)
                .execute(write)
                .await?
                .rows_affected()
            }
            Db::Postgres { pool } => {
                sqlx::query(
                    "UPDATE refresh_job_items SET lease_expires_at = $2
                     FROM (SELECT job_id, account_id FROM refresh_job_items
                           WHERE state = 'RUNNING' AND lease_owner = $1 AND account_id = ANY($3)
                           FOR UPDATE SKIP LOCKED) AS l
                     WHERE refresh_job_items.job_id = l.job_id AND refresh_job_items.account_id = l.account_id",
                )
                .bind(owner)
                .bind(to_ms(until))
                .bind(accounts)
                .execute(pool)
                .await?
                .rows_affected()
            }
        };
        Ok(done)
    }

    /// Ends every open item of `account` (held by `owner`, or queued meanwhile); see
    /// [`WorkQueue::finish_many`]. Returns `false` (writing nothing) when the lease was lost
    /// to another worker meanwhile.
    pub async fn finish(
        &self,
        owner: &str,
        account: &ClaimedAccount,
        outcome: Outcome<'_>,
        ending: Ending,
    ) -> Result<bool, StoreError> {
        let ended = self
            .finish_many(
                owner,
                &[Ended {
                    account,
                    outcome,
                    ending,
                }],
            )
            .await?;
        Ok(ended.first().copied().unwrap_or(false))
    }

    /// Ends the fetches of many accounts in one transaction, with a few statements whatever
    /// their number (the refresh endpoint's group commit, applied to ingestion). For each
    /// account still held by `owner`: its new transactions stored, `lastTransactionRefreshDate`
    /// moved (on success) and the in-flight marker cleared, every open item of it ended —
    /// those queued meanwhile too (a second job that triggered it again: the account is not
    /// fetched twice) — its jobs' states set, and one event per job appended. An account
    /// whose lease was lost to another worker meanwhile is left alone (`false` in the
    /// answer, in the order given).
    ///
    /// A fetch that would take the partner past `ending.transactions_quota` stores nothing
    /// and fails the items with `SANDBOX_QUOTA_EXCEEDED`.
    pub async fn finish_many(
        &self,
        owner: &str,
        ended: &[Ended<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        // One fetch per account: a second fetch of an account in the same batch (claimed
        // again by its own worker after its lease ran out while the first waited for a
        // commit) would end the same items twice, with two events each. The first ends them;
        // the second is answered as the first is.
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(ended.len());
        let mut unique: Vec<Ended<'_>> = Vec::with_capacity(ended.len());
        let slots: Vec<usize> = ended
            .iter()
            .map(|e| {
                *first
                    .entry(e.account.account_id.as_str())
                    .or_insert_with(|| {
                        unique.push(e.clone());
                        unique.len() - 1
                    })
            })
            .collect();
        let held = match &self.db {
            Db::Sqlite { .. } => self.finish_many_sqlite(owner, &unique).await?,
            Db::Postgres { .. } => self.finish_many_pg(owner, &unique).await?,
        };
        Ok(slots.into_iter().map(|i| held[i]).collect())
    }

    async fn finish_many_sqlite(
        &self,
        owner: &str,
        ended: &[Ended<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        let ids: Vec<&str> = ended
            .iter()
            .map(|e| e.account.account_id.as_str())
            .collect();
        let mut tx = self.begin_write().await?;
        let held: HashSet<String> = sqlx::query_as::<_, (String,)>(
            "SELECT DISTINCT account_id FROM refresh_job_items
             WHERE account_id IN (SELECT value FROM json_each($1)) AND state = 'RUNNING' AND lease_owner = $2",
        )
        .bind(json(&ids)?)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id,)| id)
        .collect();
        let answer: Vec<bool> = ended
            .iter()
            .map(|e| held.contains(&e.account.account_id))
            .collect();
        let ended: Vec<&Ended<'_>> = ended
            .iter()
            .filter(|e| held.contains(&e.account.account_id))
            .collect();
        if ended.is_empty() {
            tx.rollback().await?;
            return Ok(answer);
        }
        let held: Vec<&str> = ended
            .iter()
            .map(|e| e.account.account_id.as_str())
            .collect();
        let items: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT i.account_id, i.job_id, j.kind FROM refresh_job_items i JOIN refresh_jobs j ON j.id = i.job_id
             WHERE i.account_id IN (SELECT value FROM json_each($1))
               AND (i.state = 'QUEUED' OR (i.state = 'RUNNING' AND i.lease_owner = $2))
             ORDER BY i.account_id, i.job_id",
        )
        .bind(json(&held)?)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        // The sandbox's quota, per partner, counting what this batch stores as it goes.
        let mut quota_held: HashMap<String, i64> = HashMap::new();
        for partner in quota_partners(&ended) {
            let held = super::transactions::held_by(&mut tx, partner).await?;
            quota_held.insert(partner.to_owned(), held);
        }
        let outcomes = apply_quota(&ended, quota_held);
        let batches = ingest_batches(&ended, &outcomes);
        let new_counts = super::transactions::insert_many(&mut tx, &batches).await?;
        let endings = endings(&ended, &outcomes, &items, &new_counts);
        // The accounts: [id, fetched, as_of, balance, consent revoked].
        let accounts: Vec<serde_json::Value> = endings
            .accounts
            .iter()
            .map(|a| {
                serde_json::json!([
                    a.id,
                    i32::from(a.fetched),
                    a.as_of,
                    a.balance,
                    i32::from(a.revoked)
                ])
            })
            .collect();
        sqlx::query(
            "UPDATE accounts SET
               last_transaction_refresh_date = CASE WHEN r.fetched THEN r.as_of ELSE accounts.last_transaction_refresh_date END,
               balance = CASE WHEN r.fetched THEN COALESCE(r.new_balance, accounts.balance) ELSE accounts.balance END,
               consent_status = CASE WHEN r.revoked THEN 'EXPIRED' ELSE accounts.consent_status END,
               in_flight_since = NULL
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS fetched, value ->> 2 AS as_of,
                     value ->> 3 AS new_balance, value ->> 4 AS revoked FROM json_each($1)) AS r
             WHERE accounts.id = r.id",
        )
        .bind(json(&accounts)?)
        .execute(&mut *tx)
        .await?;
        // The items, and the event of each (in the order of the batch).
        let item_rows: Vec<serde_json::Value> = endings
            .items
            .iter()
            .map(|i| {
                serde_json::json!([
                    i.job,
                    i.account,
                    i.state,
                    i.at,
                    i.new_transactions,
                    i.code,
                    i.retryable
                ])
            })
            .collect();
        let events: Vec<serde_json::Value> = endings
            .events
            .iter()
            .map(|e| serde_json::json!([e.id, e.partner, e.event_type, e.payload, e.at]))
            .collect();
        sqlx::query(
            "UPDATE refresh_job_items SET state = r.state, finished_at = r.at, new_transactions = r.n,
               error_code = r.code, error_retryable = r.retryable, lease_owner = NULL, lease_expires_at = NULL
             FROM (SELECT value ->> 0 AS job, value ->> 1 AS account, value ->> 2 AS state, value ->> 3 AS at,
                     value ->> 4 AS n, value ->> 5 AS code, value ->> 6 AS retryable FROM json_each($1)) AS r
             WHERE refresh_job_items.job_id = r.job AND refresh_job_items.account_id = r.account",
        )
        .bind(json(&item_rows)?)
        .execute(&mut *tx)
        .await?;
        // A job ends when none of its items is open: all succeeded, all failed, or a mix.
        sqlx::query(
            "UPDATE refresh_jobs SET
               status = CASE
                 WHEN EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state IN ('QUEUED', 'RUNNING')) THEN 'RUNNING'
                 WHEN NOT EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state = 'FAILED') THEN 'SUCCEEDED'
                 WHEN NOT EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state = 'SUCCEEDED') THEN 'FAILED'
                 ELSE 'PARTIALLY_FAILED' END,
               finished_at = CASE
                 WHEN EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = refresh_jobs.id AND state IN ('QUEUED', 'RUNNING')) THEN NULL
                 ELSE $2 END
             WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json(&endings.jobs)?)
        .bind(to_ms(endings.last_now))
        .execute(&mut *tx)
        .await?;
        // One statement for every event: their webhook deliveries by the fan-out trigger.
        sqlx::query(
            "INSERT INTO events (id, partner_id, type, payload, created_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each($1)",
        )
        .bind(json(&events)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.events_committed();
        Ok(answer)
    }

    /// PostgreSQL's [`WorkQueue::finish_many`] (see the module's doc for its locks): the
    /// items locked and the lease checked under the locks ([`FINISH_LOCK_PG`]), the quota's
    /// partners locked and read, the transactions stored, then [`write_endings_pg`].
    async fn finish_many_pg(
        &self,
        owner: &str,
        ended: &[Ended<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        let ids: Vec<&str> = ended
            .iter()
            .map(|e| e.account.account_id.as_str())
            .collect();
        let mut tx = self.begin_pg().await?;
        let open: Vec<(String, String, String, String)> = sqlx::query_as(FINISH_LOCK_PG)
            .bind(&ids)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?;
        let held: HashSet<&str> = open
            .iter()
            .filter(|(.., state)| state == "RUNNING")
            .map(|(account, ..)| account.as_str())
            .collect();
        let answer: Vec<bool> = ended
            .iter()
            .map(|e| held.contains(e.account.account_id.as_str()))
            .collect();
        let ended: Vec<&Ended<'_>> = ended
            .iter()
            .filter(|e| held.contains(e.account.account_id.as_str()))
            .collect();
        if ended.is_empty() {
            tx.rollback().await?;
            return Ok(answer);
        }
        let items: Vec<(String, String, String)> = open
            .iter()
            .filter(|(account, ..)| held.contains(account.as_str()))
            .map(|(account, job, kind, _)| (account.clone(), job.clone(), kind.clone()))
            .collect();
        let quota_held =
            super::transactions::held_by_many_pg(&mut tx, &quota_partners(&ended)).await?;
        let outcomes = apply_quota(&ended, quota_held);
        let batches = ingest_batches(&ended, &outcomes);
        // In partner order: the trigger that counts a partner's transactions locks its
        // row with the partner's first new row, and partners are locked in id order.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by_key(|&i| ended[i].account.partner_id.as_str());
        let sorted: Vec<super::transactions::Batch<'_>> =
            order.iter().map(|&i| batches[i]).collect();
        let sorted_counts = super::transactions::insert_many(&mut *tx, &sorted).await?;
        let mut new_counts = vec![0_u64; batches.len()];
        for (&i, count) in order.iter().zip(sorted_counts) {
            new_counts[i] = count;
        }
        let endings = endings(&ended, &outcomes, &items, &new_counts);
        write_endings_pg(&mut tx, &endings).await?;
        tx.commit().await?;
        self.events_committed();
        Ok(answer)
    }

    /// Creates one `SCHEDULED` job per user for the accounts whose consent is valid, that are
    /// not in flight and were last ingested at or before `older_than` (or never): scheduled
    /// refreshes obey consent but not the on-demand interval. At most `limit` accounts a call;
    /// returns how many it scheduled. `partners` says whose accounts: partners on a time of
    /// their own (the sandbox clock) are scheduled on it, one by one: `as_of` and
    /// `older_than` are on the partners' time (consents, data age), `now` is the server's
    /// (the jobs' and in-flight markers' times).
    ///
    /// On PostgreSQL the due accounts and their users are locked as they are read
    /// (`FOR NO KEY UPDATE .. SKIP LOCKED`): an account or user that another transaction
    /// holds (a refresh batch deciding that user, a worker ending the account) is left for
    /// the next pass, and what is taken is due as of now (a row changed since the snapshot
    /// is read again under the lock). A refresh batch of a user locked here waits for this
    /// commit, then sees the accounts in flight. So scheduling is safe beside everything,
    /// on any number of replicas, without the serial lock.
    pub async fn schedule_refreshes(
        &self,
        now: DateTime<Utc>,
        as_of: DateTime<Utc>,
        older_than: DateTime<Utc>,
        limit: u32,
        partners: PartnerScope<'_>,
    ) -> Result<usize, StoreError> {
        let (only, except): (Option<String>, Vec<String>) = match partners {
            PartnerScope::Only(p) => (Some(p.to_string()), Vec::new()),
            PartnerScope::AllBut(those) => (None, those.iter().map(Uuid::to_string).collect()),
        };
        let (due, new_jobs) = match &self.db {
            Db::Sqlite { .. } => {
                let mut tx = self.begin_write().await?;
                let due: Vec<DueAccount> = sqlx::query_as(
                    "SELECT a.id, a.user_id, u.partner_id FROM accounts a JOIN users u ON u.id = a.user_id
                     WHERE a.consent_status = 'ACTIVE' AND (a.consent_expires_at IS NULL OR a.consent_expires_at > $1)
                       AND a.in_flight_since IS NULL
                       AND (a.last_transaction_refresh_date IS NULL OR a.last_transaction_refresh_date <= $2)
                       AND ($4 IS NULL OR u.partner_id = $4)
                       AND u.partner_id NOT IN (SELECT value FROM json_each($5))
                     ORDER BY a.user_id, a.id LIMIT $3",
                )
                .bind(to_ms(as_of))
                .bind(to_ms(older_than))
                .bind(limit)
                .bind(only)
                .bind(json(&except)?)
                .fetch_all(&mut *tx)
                .await?;
                let new_jobs = scheduled_jobs(&due, as_of);
                jobs::insert(&mut tx, &new_jobs, now).await?;
                tx.commit().await?;
                (due, new_jobs)
            }
            Db::Postgres { .. } => {
                let mut tx = self.begin_pg().await?;
                let due: Vec<DueAccount> = sqlx::query_as(
                    "SELECT a.id, a.user_id, u.partner_id FROM accounts a JOIN users u ON u.id = a.user_id
                     WHERE a.consent_status = 'ACTIVE' AND (a.consent_expires_at IS NULL OR a.consent_expires_at > $1)
                       AND a.in_flight_since IS NULL
                       AND (a.last_transaction_refresh_date IS NULL OR a.last_transaction_refresh_date <= $2)
                       AND ($4 IS NULL OR u.partner_id = $4)
                       AND u.partner_id <> ALL($5)
                     ORDER BY a.user_id, a.id LIMIT $3
                     FOR NO KEY UPDATE OF a, u SKIP LOCKED",
                )
                .bind(to_ms(as_of))
                .bind(to_ms(older_than))
                .bind(i64::from(limit))
                .bind(only)
                .bind(&except)
                .fetch_all(&mut *tx)
                .await?;
                let new_jobs = scheduled_jobs(&due, as_of);
                jobs::insert(&mut *tx, &new_jobs, now).await?;
                tx.commit().await?;
                (due, new_jobs)
            }
        };
        if !new_jobs.is_empty() {
            crate::ops::metrics::jobs_created(JobKind::Scheduled.as_str(), new_jobs.len());
            self.want_work();
        }
        Ok(due.len())
    }
}
