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
    /// for `owner` until `lease_until`. Every open item of a claimed account is taken: one
    /// fetch ends them all, so an account in two jobs is not fetched twice.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedAccount>, StoreError> {
        let mut tx = self.begin_write().await?;
        let accounts: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT account_id FROM refresh_job_items
             WHERE state = 'QUEUED' OR (state = 'RUNNING' AND lease_expires_at < ?1) LIMIT ?2",
        )
        .bind(to_ms(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(accounts.len());
        for (account_id,) in accounts {
            sqlx::query(
                "UPDATE refresh_job_items SET state = 'RUNNING', lease_owner = ?1, lease_expires_at = ?2,
                   attempts = attempts + 1, started_at = COALESCE(started_at, ?3)
                 WHERE account_id = ?4 AND state IN ('QUEUED', 'RUNNING')",
            )
            .bind(owner)
            .bind(to_ms(lease_until))
            .bind(to_ms(now))
            .bind(&account_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE refresh_jobs SET status = 'RUNNING' WHERE status = 'QUEUED'
                 AND id IN (SELECT job_id FROM refresh_job_items WHERE account_id = ?1 AND lease_owner = ?2)",
            )
            .bind(&account_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            let row: Option<ClaimRow> = sqlx::query_as(
                "SELECT a.user_id, u.partner_id, a.bank_id, a.bank_account_id, a.bank_consent_id,
                   a.last_transaction_refresh_date
                 FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.id = ?1",
            )
            .bind(&account_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                claimed.push(ClaimedAccount {
                    account_id,
                    user_id: row.user_id,
                    partner_id: row.partner_id,
                    bank: AccountAtBank {
                        bank_id: row.bank_id,
                        account_id: row.bank_account_id,
                        consent_id: row.bank_consent_id,
                    },
                    last_refresh: row.last_transaction_refresh_date.map(from_ms),
                });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Ends every open item of `account` (held by `owner`, or queued meanwhile), in one transaction: stores new
    /// transactions, moves `lastTransactionRefreshDate` (on success), clears the in-flight
    /// marker, sets the items' and jobs' states, and appends one event per job. Returns
    /// `false` (writing nothing) when the lease was lost to another worker meanwhile.
    ///
    /// A fetch that would take the partner past `ending.transactions_quota` stores nothing
    /// and fails the items with `SANDBOX_QUOTA_EXCEEDED`.
    pub async fn finish(
        &self,
        owner: &str,
        account: &ClaimedAccount,
        outcome: Outcome<'_>,
        ending: Ending,
    ) -> Result<bool, StoreError> {
        let Ending {
            now,
            as_of,
            transactions_quota,
        } = ending;
        let mut tx = self.begin_write().await?;
        let held: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM refresh_job_items WHERE account_id = ?1 AND state = 'RUNNING' AND lease_owner = ?2 LIMIT 1",
        )
        .bind(&account.account_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(false);
        }
        // Items queued for this account while its fetch ran (a second job that triggered it
        // again) end with this fetch too: the account is not fetched twice.
        let jobs: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.job_id, j.kind FROM refresh_job_items i JOIN refresh_jobs j ON j.id = i.job_id
             WHERE i.account_id = ?1 AND (i.state = 'QUEUED' OR (i.state = 'RUNNING' AND i.lease_owner = ?2))",
        )
        .bind(&account.account_id)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        let outcome = match (outcome, transactions_quota) {
            (Outcome::Fetched(fetched), Some(quota)) if !fetched.transactions.is_empty() => {
                let held = super::transactions::held_by(&mut tx, &account.partner_id).await?;
                if held + fetched.transactions.len() as i64 > i64::from(quota) {
                    Outcome::Failed {
                        code: QUOTA_EXCEEDED,
                        retryable: false,
                        consent_revoked: false,
                    }
                } else {
                    Outcome::Fetched(fetched)
                }
            }
            (outcome, _) => outcome,
        };
        let mut new_transactions: i64 = 0;
        match &outcome {
            Outcome::Fetched(fetch) => {
                // The bank's id deduplicates against what is already stored.
                let inserted = super::transactions::insert(
                    &mut tx,
                    &account.account_id,
                    &account.user_id,
                    fetch.transactions,
                    as_of,
                )
                .await?;
                new_transactions = i64::try_from(inserted).unwrap_or(0);
                sqlx::query(
                    "UPDATE accounts SET last_transaction_refresh_date = ?2, in_flight_since = NULL,
                       balance = COALESCE(?3, balance) WHERE id = ?1",
                )
                .bind(&account.account_id)
                .bind(to_ms(as_of))
                .bind(fetch.balance)
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Failed {
                consent_revoked, ..
            } => {
                sqlx::query(
                    "UPDATE accounts SET in_flight_since = NULL,
                       consent_status = CASE WHEN ?2 THEN 'EXPIRED' ELSE consent_status END WHERE id = ?1",
                )
                .bind(&account.account_id)
                .bind(*consent_revoked)
                .execute(&mut *tx)
                .await?;
            }
        }
        let (state, code, retryable) = match &outcome {
            Outcome::Fetched(_) => ("SUCCEEDED", None, None),
            Outcome::Failed {
                code, retryable, ..
            } => ("FAILED", Some(*code), Some(*retryable)),
        };
        for (job_id, kind) in &jobs {
            sqlx::query(
                "UPDATE refresh_job_items SET state = ?3, finished_at = ?4, new_transactions = ?5, error_code = ?6,
                   error_retryable = ?7, lease_owner = NULL, lease_expires_at = NULL
                 WHERE job_id = ?1 AND account_id = ?2",
            )
            .bind(job_id)
            .bind(&account.account_id)
            .bind(state)
            .bind(to_ms(now))
            .bind((state == "SUCCEEDED").then_some(new_transactions))
            .bind(code)
            .bind(retryable)
            .execute(&mut *tx)
            .await?;
            // The job ends when none of its items is open: all succeeded, all failed, or a mix.
            sqlx::query(
                "UPDATE refresh_jobs SET
                   status = CASE
                     WHEN EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = ?1 AND state IN ('QUEUED', 'RUNNING')) THEN 'RUNNING'
                     WHEN NOT EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = ?1 AND state = 'FAILED') THEN 'SUCCEEDED'
                     WHEN NOT EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = ?1 AND state = 'SUCCEEDED') THEN 'FAILED'
                     ELSE 'PARTIALLY_FAILED' END,
                   finished_at = CASE
                     WHEN EXISTS (SELECT 1 FROM refresh_job_items WHERE job_id = ?1 AND state IN ('QUEUED', 'RUNNING')) THEN NULL
                     ELSE ?2 END
                 WHERE id = ?1",
            )
            .bind(job_id)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
            let (event_type, payload) = event(
                JobKind::parse(kind),
                job_id,
                account,
                &outcome,
                new_transactions,
                as_of,
            );
            super::events::insert(&mut tx, &account.partner_id, &event_type, &payload, now).await?;
        }
        tx.commit().await?;
        self.events_committed();
        Ok(true)
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
        Ok(due.len())
    }
}
