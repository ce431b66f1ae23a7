//! The on-demand refresh decision: validation, the rules' verdict and the job, made
//! atomically per request and committed in groups.
//!
//! One fsync costs 1–3 ms on this kind of disk, so a commit per request would cap the
//! endpoint near a few hundred requests a second. Instead one writer task takes every
//! request waiting at that moment, decides each in turn inside one `BEGIN IMMEDIATE`
//! transaction (each in its own savepoint, so a failing request rolls back alone and later
//! requests see earlier ones' writes), commits once, and only then answers them all.
//! Every 201 is therefore sent after its job is on disk, and concurrent requests for one
//! user are decided one after another: at most one of them triggers.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::{Decision, Outcome, RefreshPolicy, SkipReason, Status};
use serde::Serialize;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::clock::Clock;
use crate::model::{Account, Partner, UserSource, ts_opt};
use crate::store::{self, NewJob, Store, StoreError, StoredResponse};

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
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = decide_batch(&store, &clock, &policy, &batch).await;
        for (pending, result) in batch.drain(..).zip(results) {
            // The client may have gone away; its job stands either way.
            let _ = pending.reply.send(result);
        }
    }
}

async fn decide_batch(
    store: &Store,
    clock: &Clock,
    policy: &RefreshPolicy,
    batch: &[Pending],
) -> Vec<Result<RefreshResponse, RefreshError>> {
    let mut tx = match store.begin_write().await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "refresh batch: could not start the write transaction");
            return batch
                .iter()
                .map(|_| Err(RefreshError::NotCommitted))
                .collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        results.push(decide_in_savepoint(&mut tx, &pending.command, clock.now(), policy).await);
    }
    if let Err(e) = tx.commit().await {
        tracing::error!(error = %e, "refresh batch: commit failed; every request of the batch fails");
        return batch
            .iter()
            .map(|_| Err(RefreshError::NotCommitted))
            .collect();
    }
    results
}

async fn decide_in_savepoint(
    conn: &mut SqliteConnection,
    command: &RefreshCommand,
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> Result<RefreshResponse, RefreshError> {
    let mut savepoint = conn.begin().await.map_err(StoreError::from)?;
    match decide(&mut savepoint, command, now, policy).await {
        Ok(response) => {
            savepoint.commit().await.map_err(StoreError::from)?;
            Ok(response)
        }
        Err(e) => {
            savepoint.rollback().await.map_err(StoreError::from)?;
            Err(e)
        }
    }
}

/// One request: replay, validate, evaluate with the rules, write the job.
async fn decide(
    conn: &mut SqliteConnection,
    command: &RefreshCommand,
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> Result<RefreshResponse, RefreshError> {
    let partner = command.partner.id;
    if let Some(key) = &command.idempotency_key
        && let Some(stored) =
            store::refresh::stored_response(conn, partner, key, now - IDEMPOTENCY_WINDOW).await?
    {
        if stored.user_id != command.user_id {
            return Err(RefreshError::IdempotencyKeyReused);
        }
        return Ok(RefreshResponse {
            status: stored.status,
            body: stored.body,
            retry_after: stored.retry_after,
        });
    }
    if !command.partner.direct_enabled {
        return Err(RefreshError::DirectNotEnabled);
    }
    let user = store::refresh::load_user(conn, partner, command.user_id)
        .await?
        .ok_or(RefreshError::UserNotFound)?;
    if user.source == UserSource::Marketplace {
        return Err(RefreshError::MarketplaceUser);
    }

    let states: Vec<_> = user.accounts.iter().map(Account::rules_state).collect();
    let decision = freshet_rules::evaluate(&states, now, policy);
    let job_id = (decision.status == Status::Triggered).then(store::new_id);
    if let Some(job_id) = job_id {
        let triggered: Vec<Uuid> = decision
            .triggered()
            .filter_map(|d| Uuid::parse_str(d.account_id).ok())
            .collect();
        store::refresh::insert_job(
            conn,
            NewJob {
                job_id,
                partner,
                user_id: command.user_id,
                accounts: &triggered,
                now,
            },
        )
        .await?;
    }
    let response = RefreshResponse {
        status: decision.http_status(),
        body: response_body(job_id, &decision),
        retry_after: decision.retry_after_seconds(now),
    };
    if let Some(key) = &command.idempotency_key {
        let stored = StoredResponse {
            user_id: command.user_id,
            status: response.status,
            body: response.body.clone(),
            retry_after: response.retry_after,
        };
        store::refresh::store_response(conn, partner, key, &stored, now).await?;
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
