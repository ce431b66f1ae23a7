//! The on-demand refresh decision: validation, the rules' verdict and the job, made
//! atomically per request and committed in groups.
//!
//! One fsync costs 1–3 ms on this kind of disk, so a commit per request would cap the
//! endpoint near a few hundred requests a second. Instead one writer task takes every
//! request waiting at that moment (group commit) and, inside one `BEGIN IMMEDIATE`
//! transaction, reads all their users at once, decides each request in turn in memory
//! (later ones seeing earlier ones' jobs), writes all the jobs in a few statements, commits
//! once, and only then answers them all. Every 201 is therefore sent after its job is on
//! disk, and concurrent requests for one user are decided one after another: at most one
//! of them triggers.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::{Decision, Outcome, RefreshPolicy, SkipReason, Status};
use serde::Serialize;
use std::collections::HashMap;

use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::clock::Clock;
use crate::model::{Partner, UserSource, ts_opt};
use crate::store::{self, LoadedUser, NewJob, Store, StoreError, StoredResponse};

/// How many waiting requests one commit may carry.
const MAX_BATCH: usize = 512;
/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// One `POST /v1/users/{userId}/accounts-refresh`.
#[derive(Clone, Debug)]
pub struct RefreshCommand {
    /// The caller.
    pub partner: Partner,
    /// Whose accounts.
    pub user_id: Uuid,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
}

/// The answer, ready to send (or re-send, for an `Idempotency-Key` replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshResponse {
    /// 201 or 200.
    pub status: u16,
    /// The JSON body.
    pub body: String,
    /// The `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
}

/// Why a refresh request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No such user for this partner.
    #[error("the userId does not exist for this partner")]
    UserNotFound,
    /// Marketplace-sourced users are never refreshed on demand.
    #[error("on-demand refresh is only available for users of the direct connection journey")]
    MarketplaceUser,
    /// The partner is not enrolled in the direct connection journey.
    #[error("this partner is not enabled for the direct connection journey")]
    DirectNotEnabled,
    /// The `Idempotency-Key` was first used for another user.
    #[error("this Idempotency-Key was already used for another user")]
    IdempotencyKeyReused,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer task is gone (the server is shutting down).
    #[error("the refresh writer is not running")]
    Stopped,
    /// The batch this request was decided in could not be committed: nothing of it was kept.
    #[error("the refresh could not be committed")]
    NotCommitted,
}

struct Pending {
    command: RefreshCommand,
    reply: oneshot::Sender<Result<RefreshResponse, RefreshError>>,
}

/// The refresh service: send it commands, it answers once they are committed.
#[derive(Clone, Debug)]
pub struct RefreshService {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl RefreshService {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(store: Store, clock: Arc<Clock>, policy: RefreshPolicy) -> Self {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(rx, store, clock, policy));
        Self { queue }
    }

    /// Decides the refresh; returns once its writes are durably committed.
    pub async fn refresh(&self, command: RefreshCommand) -> Result<RefreshResponse, RefreshError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| RefreshError::Stopped)?;
        answer.await.map_err(|_| RefreshError::Stopped)?
    }
}

async fn writer(
    mut rx: mpsc::Receiver<Pending>,
    store: Store,
    clock: Arc<Clock>,
    policy: RefreshPolicy,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut conn: Option<SqliteConnection> = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if conn.is_none() {
            conn = store
                .dedicated_writer()
                .await
                .inspect_err(
                    |e| tracing::error!(error = %e, "refresh writer: cannot open its connection"),
                )
                .ok();
        }
        let results = match conn.as_mut() {
            Some(c) => decide_batch(c, &clock, &policy, &batch).await,
            None => batch
                .iter()
                .map(|_| Err(RefreshError::NotCommitted))
                .collect(),
        };
        // After a failed batch the connection may be in any state: the next batch opens a new one.
        if results
            .iter()
            .any(|r| matches!(r, Err(RefreshError::NotCommitted)))
        {
            conn = None;
        }
        for (pending, result) in batch.drain(..).zip(results) {
            // The client may have gone away; its job stands either way.
            let _ = pending.reply.send(result);
        }
    }
}

async fn decide_batch(
    conn: &mut SqliteConnection,
    clock: &Clock,
    policy: &RefreshPolicy,
    batch: &[Pending],
) -> Vec<Result<RefreshResponse, RefreshError>> {
    match decide_and_commit(conn, clock.now(), policy, batch).await {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(error = %e, size = batch.len(), "refresh batch not committed; every request of it fails");
            batch
                .iter()
                .map(|_| Err(RefreshError::NotCommitted))
                .collect()
        }
    }
}

/// What one batch writes, gathered while its requests are decided in memory.
#[derive(Default)]
struct Writes {
    jobs: Vec<NewJob>,
    responses: Vec<(Uuid, String, StoredResponse)>,
}

/// Reads every user of the batch in one query, decides each request in arrival order
/// against that state (each decision updating it, so a later request sees an earlier one's
/// jobs), then writes everything in three or four statements and commits once. A request
/// refused for its own reasons writes nothing; a failing write fails the whole batch, of
/// which nothing is then kept.
async fn decide_and_commit(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
    batch: &[Pending],
) -> Result<Vec<Result<RefreshResponse, RefreshError>>, StoreError> {
    let result = decide_and_commit_inner(conn, now, policy, batch).await;
    if result.is_err() {
        store::refresh::rollback(conn).await;
    }
    result
}

async fn decide_and_commit_inner(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
    batch: &[Pending],
) -> Result<Vec<Result<RefreshResponse, RefreshError>>, StoreError> {
    let mut user_ids: Vec<Uuid> = batch.iter().map(|p| p.command.user_id).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let mut users = store::refresh::begin_and_load_users(conn, &user_ids).await?;
    let mut writes = Writes::default();
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        let replay = replayed(conn, &pending.command, &writes, now).await?;
        results.push(match replay {
            Some(answer) => answer,
            None => decide(&pending.command, &mut users, &mut writes, now, policy),
        });
    }
    store::refresh::store_responses(conn, &writes.responses, now).await?;
    store::refresh::insert_jobs_and_commit(conn, &writes.jobs, now).await?;
    Ok(results)
}

/// The first answer under the command's `Idempotency-Key` (from this batch or the last
/// 24 hours), or `None` when there is none.
async fn replayed(
    conn: &mut SqliteConnection,
    command: &RefreshCommand,
    writes: &Writes,
    now: DateTime<Utc>,
) -> Result<Option<Result<RefreshResponse, RefreshError>>, StoreError> {
    let Some(key) = &command.idempotency_key else {
        return Ok(None);
    };
    let partner = command.partner.id;
    let in_batch = writes
        .responses
        .iter()
        .find(|(p, k, _)| *p == partner && k == key)
        .map(|(_, _, r)| r.clone());
    let stored = match in_batch {
        Some(r) => Some(r),
        None => {
            store::refresh::stored_response(conn, partner, key, now - IDEMPOTENCY_WINDOW).await?
        }
    };
    Ok(stored.map(|stored| {
        if stored.user_id == command.user_id {
            Ok(RefreshResponse {
                status: stored.status,
                body: stored.body,
                retry_after: stored.retry_after,
            })
        } else {
            Err(RefreshError::IdempotencyKeyReused)
        }
    }))
}

/// One request, in memory: validate, evaluate with the rules, note the job to write.
fn decide(
    command: &RefreshCommand,
    users: &mut HashMap<Uuid, (Uuid, LoadedUser)>,
    writes: &mut Writes,
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> Result<RefreshResponse, RefreshError> {
    let partner = command.partner.id;
    if !command.partner.direct_enabled {
        return Err(RefreshError::DirectNotEnabled);
    }
    let user = match users.get_mut(&command.user_id) {
        Some((owner, user)) if *owner == partner => user,
        _ => return Err(RefreshError::UserNotFound),
    };
    if user.source == UserSource::Marketplace {
        return Err(RefreshError::MarketplaceUser);
    }

    let decision = freshet_rules::evaluate(&user.accounts, now, policy);
    let job_id = (decision.status == Status::Triggered).then(store::new_id);
    let response = RefreshResponse {
        status: decision.http_status(),
        body: response_body(job_id, &decision),
        retry_after: decision.retry_after_seconds(now),
    };
    if let Some(job_id) = job_id {
        let triggered: Vec<String> = decision
            .triggered()
            .map(|d| d.account_id.to_owned())
            .collect();
        // Later requests of this batch must see these accounts in flight, as the database will.
        for account in user
            .accounts
            .iter_mut()
            .filter(|a| triggered.contains(&a.account_id))
        {
            account.in_flight_since.get_or_insert(now);
        }
        writes.jobs.push(NewJob {
            job_id,
            partner,
            user_id: command.user_id,
            accounts: triggered,
        });
    }
    if let Some(key) = &command.idempotency_key {
        let stored = StoredResponse {
            user_id: command.user_id,
            status: response.status,
            body: response.body.clone(),
            retry_after: response.retry_after,
        };
        writes.responses.push((partner, key.clone(), stored));
    }
    Ok(response)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<Uuid>,
    status: Status,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    next_refresh_available_at: Option<DateTime<Utc>>,
    accounts: Vec<AccountOutcome<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountOutcome<'a> {
    account_id: &'a str,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<SkipReason>,
}

/// The D•One response shape: `jobId` (on 201), `status`, `metadata.accounts[]`.
fn response_body(job_id: Option<Uuid>, decision: &Decision<'_>) -> String {
    let body = Body {
        job_id,
        status: decision.status,
        metadata: Metadata {
            next_refresh_available_at: decision.next_refresh_available_at,
            accounts: decision
                .accounts
                .iter()
                .map(|a| AccountOutcome {
                    account_id: a.account_id,
                    outcome: a.verdict.outcome(),
                    reason: a.verdict.reason(),
                })
                .collect(),
        },
    };
    // Serializing plain strings, enums and UUIDs cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}
