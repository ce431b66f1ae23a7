//! The refresh work queue: claiming job items with a lease, and ending them — ingestion,
//! the account's new state, the job's status and the events — in one transaction each.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::accounts::AccountAtBank;
use super::jobs::{self, NewJob};
use super::{StoreError, WorkQueue, json, new_id};
use crate::model::{JobKind, from_ms, to_ms};

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

impl WorkQueue<'_> {
    /// Claims up to `limit` accounts that have a job item waiting (or a lease that ran out),
    /// for `owner` until `lease_until`, none of them at a bank of `skip` (banks whose share
    /// of calls is taken: their work waits in the queue, not in a worker). Every open item
    /// of a claimed account is taken: one fetch ends them all, so an account in two jobs is
    /// not fetched twice; an account another worker holds a live lease on is never taken.
    /// A few statements, whatever the number claimed.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<ClaimedAccount>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let claimed: Vec<(String, String)> = sqlx::query_as(
            "WITH picked AS (
               SELECT DISTINCT i.account_id FROM refresh_job_items i
               JOIN accounts a ON a.id = i.account_id
               WHERE (i.state = 'QUEUED' OR (i.state = 'RUNNING' AND i.lease_expires_at < ?1))
                 AND a.bank_id NOT IN (SELECT value FROM json_each(?3))
                 AND NOT EXISTS (SELECT 1 FROM refresh_job_items l
                   WHERE l.account_id = i.account_id AND l.state = 'RUNNING' AND l.lease_expires_at >= ?1)
               LIMIT ?2
             )
             UPDATE refresh_job_items SET state = 'RUNNING', lease_owner = ?4, lease_expires_at = ?5,
               attempts = attempts + 1, started_at = COALESCE(started_at, ?1)
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
               AND id IN (SELECT value FROM json_each(?1))",
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
             WHERE a.id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json(&accounts)?)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| ClaimedAccount {
                account_id: row.id,
                user_id: row.user_id,
                partner_id: row.partner_id,
                bank: AccountAtBank {
                    bank_id: row.bank_id,
                    account_id: row.bank_account_id,
                    consent_id: row.bank_consent_id,
                },
                last_refresh: row.last_transaction_refresh_date.map(from_ms),
            })
            .collect())
    }

    /// Extends every lease `owner` holds to `until` (one statement): a worker's accounts
    /// waiting for their bank's share, or retrying, stay its own while it lives.
    pub async fn extend_leases(
        &self,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE refresh_job_items SET lease_expires_at = ?2
             WHERE state = 'RUNNING' AND lease_owner = ?1",
        )
        .bind(owner)
        .bind(to_ms(until))
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
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
        let ids: Vec<&str> = ended
            .iter()
            .map(|e| e.account.account_id.as_str())
            .collect();
        let mut tx = self.begin_write().await?;
        let held: std::collections::HashSet<String> = sqlx::query_as::<_, (String,)>(
            "SELECT DISTINCT account_id FROM refresh_job_items
             WHERE account_id IN (SELECT value FROM json_each(?1)) AND state = 'RUNNING' AND lease_owner = ?2",
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
             WHERE i.account_id IN (SELECT value FROM json_each(?1))
               AND (i.state = 'QUEUED' OR (i.state = 'RUNNING' AND i.lease_owner = ?2))
             ORDER BY i.account_id, i.job_id",
        )
        .bind(json(&held)?)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        // The sandbox's quota, per partner, counting what this batch stores as it goes.
        let mut quota_held: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        let mut outcomes: Vec<Outcome<'_>> = Vec::with_capacity(ended.len());
        for e in &ended {
            let outcome = match (&e.outcome, e.ending.transactions_quota) {
                (Outcome::Fetched(fetched), Some(quota)) if !fetched.transactions.is_empty() => {
                    let partner = e.account.partner_id.as_str();
                    let held = match quota_held.get(partner) {
                        Some(n) => *n,
                        None => super::transactions::held_by(&mut tx, partner).await?,
                    };
                    let after = held + fetched.transactions.len() as i64;
                    if after > i64::from(quota) {
                        quota_held.insert(partner, held);
                        Outcome::Failed {
                            code: QUOTA_EXCEEDED,
                            retryable: false,
                            consent_revoked: false,
                        }
                    } else {
                        quota_held.insert(partner, after);
                        e.outcome.clone()
                    }
                }
                (outcome, _) => outcome.clone(),
            };
            outcomes.push(outcome);
        }
        let batches: Vec<super::transactions::Batch<'_>> = ended
            .iter()
            .zip(&outcomes)
            .map(|(e, outcome)| super::transactions::Batch {
                account_id: &e.account.account_id,
                user_id: &e.account.user_id,
                transactions: match outcome {
                    Outcome::Fetched(fetch) => fetch.transactions,
                    Outcome::Failed { .. } => &[],
                },
                created: e.ending.as_of,
            })
            .collect();
        let new_counts = super::transactions::insert_many(&mut tx, &batches).await?;
        // The accounts: [id, fetched, as_of, balance, consent revoked].
        let accounts: Vec<serde_json::Value> = ended
            .iter()
            .zip(&outcomes)
            .map(|(e, outcome)| match outcome {
                Outcome::Fetched(fetch) => serde_json::json!([
                    e.account.account_id,
                    1,
                    to_ms(e.ending.as_of),
                    fetch.balance,
                    0
                ]),
                Outcome::Failed {
                    consent_revoked, ..
                } => serde_json::json!([
                    e.account.account_id,
                    0,
                    null,
                    null,
                    i32::from(*consent_revoked)
                ]),
            })
            .collect();
        sqlx::query(
            "UPDATE accounts SET
               last_transaction_refresh_date = CASE WHEN r.fetched THEN r.as_of ELSE accounts.last_transaction_refresh_date END,
               balance = CASE WHEN r.fetched THEN COALESCE(r.new_balance, accounts.balance) ELSE accounts.balance END,
               consent_status = CASE WHEN r.revoked THEN 'EXPIRED' ELSE accounts.consent_status END,
               in_flight_since = NULL
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS fetched, value ->> 2 AS as_of,
                     value ->> 3 AS new_balance, value ->> 4 AS revoked FROM json_each(?1)) AS r
             WHERE accounts.id = r.id",
        )
        .bind(json(&accounts)?)
        .execute(&mut *tx)
        .await?;
        // The items, and the event of each (in the order of the batch).
        let mut item_rows: Vec<serde_json::Value> = Vec::new();
        let mut events: Vec<serde_json::Value> = Vec::new();
        let mut jobs: Vec<&str> = Vec::new();
        let mut seen_jobs: std::collections::HashSet<&str> = std::collections::HashSet::new();
        // Each account's open items (jobs), in job order.
        let mut items_of: std::collections::HashMap<&str, Vec<(&str, &str)>> =
            std::collections::HashMap::new();
        for (account, job_id, kind) in &items {
            items_of
                .entry(account.as_str())
                .or_default()
                .push((job_id.as_str(), kind.as_str()));
        }
        let mut last_now = ended[0].ending.now;
        for ((e, outcome), new_transactions) in ended.iter().zip(&outcomes).zip(&new_counts) {
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
                item_rows.push(serde_json::json!([
                    job_id,
                    e.account.account_id,
                    state,
                    to_ms(e.ending.now),
                    (state == "SUCCEEDED").then_some(new_transactions),
                    code,
                    retryable
                ]));
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
                events.push(serde_json::json!([
                    Uuid::new_v4().to_string(),
                    e.account.partner_id,
                    event_type,
                    payload.to_string(),
                    to_ms(e.ending.now)
                ]));
            }
        }
        sqlx::query(
            "UPDATE refresh_job_items SET state = r.state, finished_at = r.at, new_transactions = r.n,
               error_code = r.code, error_retryable = r.retryable, lease_owner = NULL, lease_expires_at = NULL
             FROM (SELECT value ->> 0 AS job, value ->> 1 AS account, value ->> 2 AS state, value ->> 3 AS at,
                     value ->> 4 AS n, value ->> 5 AS code, value ->> 6 AS retryable FROM json_each(?1)) AS r
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
                 ELSE ?2 END
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json(&jobs)?)
        .bind(to_ms(last_now))
        .execute(&mut *tx)
        .await?;
        // One statement for every event: their webhook deliveries by the fan-out trigger.
        sqlx::query(
            "INSERT INTO events (id, partner_id, type, payload, created_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?1)",
        )
        .bind(json(&events)?)
        .execute(&mut *tx)
        .await?;
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
    pub async fn schedule_refreshes(
        &self,
        now: DateTime<Utc>,
        as_of: DateTime<Utc>,
        older_than: DateTime<Utc>,
        limit: u32,
        partners: PartnerScope<'_>,
    ) -> Result<usize, StoreError> {
        let (only, except) = match partners {
            PartnerScope::Only(p) => (Some(p.to_string()), String::from("[]")),
            PartnerScope::AllBut(those) => (
                None,
                json(&those.iter().map(Uuid::to_string).collect::<Vec<_>>())?,
            ),
        };
        let mut tx = self.begin_write().await?;
        let due: Vec<DueAccount> = sqlx::query_as(
            "SELECT a.id, a.user_id, u.partner_id FROM accounts a JOIN users u ON u.id = a.user_id
             WHERE a.consent_status = 'ACTIVE' AND (a.consent_expires_at IS NULL OR a.consent_expires_at > ?1)
               AND a.in_flight_since IS NULL
               AND (a.last_transaction_refresh_date IS NULL OR a.last_transaction_refresh_date <= ?2)
               AND (?4 IS NULL OR u.partner_id = ?4)
               AND u.partner_id NOT IN (SELECT value FROM json_each(?5))
             ORDER BY a.user_id, a.id LIMIT ?3",
        )
        .bind(to_ms(as_of))
        .bind(to_ms(older_than))
        .bind(limit)
        .bind(only)
        .bind(except)
        .fetch_all(&mut *tx)
        .await?;
        // One job per user: the rows come ordered by user.
        let mut new_jobs: Vec<NewJob> = Vec::new();
        for a in &due {
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
        jobs::insert(&mut tx, &new_jobs, now).await?;
        tx.commit().await?;
        if !new_jobs.is_empty() {
            crate::ops::metrics::jobs_created(JobKind::Scheduled.as_str(), new_jobs.len());
            self.want_work();
        }
        Ok(due.len())
    }
}
