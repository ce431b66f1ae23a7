//! The on-demand refresh decision: validation, the rules' verdict and the job, made
//! atomically per request and committed in groups.
//!
//! One fsync costs 1–3 ms on this kind of disk, so a commit per request would cap the
//! endpoint near a few hundred requests a second. Instead one writer task takes every
//! request waiting at that moment (group commit) and, inside one write transaction
//! (`store::RefreshWriter`), reads all their users at once, decides each request in turn in
//! memory (later ones seeing earlier ones' jobs), writes all the jobs in a few statements,
//! commits once, and only then answers them all. Every 201 is therefore sent after its job
//! is on disk, and concurrent requests for one user are decided one after another: at most
//! one of them triggers.
//!
//! On PostgreSQL several writers take turns collecting batches ([`PG_WRITERS`]): while one
//! waits for its commit, the next collects and decides the requests that arrived meanwhile.
//! Their batches may overlap in users; the store's row locks on the users decide them one
//! after another, as the single SQLite writer does. A batch costs PostgreSQL about as much
//! per statement as per request, so under load a writer gathers before it goes, as
//! PostgreSQL's own `commit_delay` does for its WAL flushes: while another writer's batch
//! is in the database, a small batch waits up to [`GATHER_FOR`] for more requests. Alone,
//! a request goes at once. (Measured in BENCHMARKS.md: batches of ~7 requests became ~20,
//! PostgreSQL's CPU per request fell by half.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::{RefreshPolicy, Status, Verdict};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::Error;
use crate::clock::Clock;
use crate::model::{JobKind, Partner, UserSource, new_id};
use crate::store::{Batch, BatchWrites, NewJob, RefreshWriter, Store, StoredResponse};

/// How many waiting requests one commit may carry.
const MAX_BATCH: usize = 512;
/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// An `Idempotency-Key` and how the front renders the answer it keeps for replays.
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// The bytes a replay sends again.
    pub render: fn(&RefreshOutcome) -> String,
}

/// One on-demand refresh.
#[derive(Clone, Debug)]
pub struct RefreshCommand {
    /// The caller.
    pub partner: Partner,
    /// Whose accounts.
    pub user_id: Uuid,
    /// The `Idempotency-Key`, if sent.
    pub idempotency: Option<Idempotency>,
}

/// One account's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountVerdict {
    /// The account.
    pub account_id: String,
    /// Triggered, or skipped and why.
    pub verdict: Verdict,
}

/// What a refresh decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// The job, when anything triggered.
    pub job_id: Option<Uuid>,
    /// `TRIGGERED` when anything triggered.
    pub status: Status,
    /// When nothing triggered: when a refresh would trigger next, if ever.
    pub next_refresh_available_at: Option<DateTime<Utc>>,
    /// Every account, by id.
    pub accounts: Vec<AccountVerdict>,
    /// Seconds until `next_refresh_available_at`.
    pub retry_after: Option<u64>,
}

impl RefreshOutcome {
    /// 201 when a job was created, 200 when nothing triggered.
    pub fn http_status(&self) -> u16 {
        if self.job_id.is_some() { 201 } else { 200 }
    }
}

/// The answer: decided now, or the first answer under the same `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshAnswer {
    /// Decided by this request.
    Decided(RefreshOutcome),
    /// The answer kept for the key, byte for byte.
    Replayed(StoredResponse),
}

struct Pending {
    command: RefreshCommand,
    reply: oneshot::Sender<Result<RefreshAnswer, Error>>,
}

/// The refresh writer's queue: send it commands, it answers once they are committed.
#[derive(Clone, Debug)]
pub(super) struct RefreshService {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// Writers that take turns on PostgreSQL (SQLite has one writer: one).
const PG_WRITERS: usize = 8;
/// How long a PostgreSQL writer waits for more requests while another batch is in the
/// database (see the module's doc); a fraction of one commit's round trips and fsync.
const GATHER_FOR: Duration = Duration::from_millis(1);
/// A batch this large goes without waiting.
const GATHER_UP_TO: usize = 32;

impl RefreshService {
    /// Starts the writer tasks on the current Tokio runtime.
    pub(super) fn start(store: Store, clock: Arc<Clock>, policy: RefreshPolicy) -> Self {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        let (writers, gather) = match store.backend() {
            // One writer: nothing else is in the database while it collects.
            crate::store::Backend::Sqlite => (1, None),
            crate::store::Backend::Postgres => (PG_WRITERS, Some(GATHER_FOR)),
        };
        let turns = Arc::new(Turns {
            queue: Mutex::new(rx),
            in_database: AtomicUsize::new(0),
            gather,
        });
        for _ in 0..writers {
            tokio::spawn(writer(
                Arc::clone(&turns),
                RefreshWriter::new(store.clone()),
                Arc::clone(&clock),
                policy,
            ));
        }
        Self { queue }
    }
}

impl super::Services {
    /// Decides a refresh; returns once its writes are durably committed.
    pub async fn refresh(&self, command: RefreshCommand) -> Result<RefreshAnswer, Error> {
        let (reply, answer) = oneshot::channel();
        self.refresh
            .queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| Error::NotCommitted)?;
        answer.await.map_err(|_| Error::NotCommitted)?
    }
}

/// What the writers share: the queue, held by one writer at a time while it collects a
/// batch (not while it commits), and how many batches are in the database meanwhile.
struct Turns {
    queue: Mutex<mpsc::Receiver<Pending>>,
    in_database: AtomicUsize,
    /// How long to gather while another batch is in the database (`None`: never).
    gather: Option<Duration>,
}

impl Turns {
    /// The next batch into `batch`; `false` once the queue is closed and empty.
    async fn collect(&self, batch: &mut Vec<Pending>) -> bool {
        let mut queue = self.queue.lock().await;
        if queue.recv_many(batch, MAX_BATCH).await == 0 {
            return false;
        }
        let Some(gather) = self.gather else {
            return true;
        };
        if self.in_database.load(Ordering::Acquire) == 0 {
            return true;
        }
        let until = tokio::time::Instant::now() + gather;
        while batch.len() < GATHER_UP_TO {
            let room = MAX_BATCH - batch.len();
            match tokio::time::timeout_at(until, queue.recv_many(batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        true
    }
}

async fn writer(
    turns: Arc<Turns>,
    mut store: RefreshWriter,
    clock: Arc<Clock>,
    policy: RefreshPolicy,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while turns.collect(&mut batch).await {
        // Counted while it is in the database: the next writer gathers meanwhile.
        turns.in_database.fetch_add(1, Ordering::AcqRel);
        let now = clock.now();
        let mut user_ids: Vec<Uuid> = batch.iter().map(|p| p.command.user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let keys: Vec<(Uuid, String)> = batch
            .iter()
            .filter_map(|p| {
                let key = &p.command.idempotency.as_ref()?.key;
                Some((p.command.partner.id, key.clone()))
            })
            .collect();
        let decided = store
            .run(&user_ids, &keys, now - IDEMPOTENCY_WINDOW, now, |read| {
                decide_batch(read, &batch, now, &clock, &policy)
            })
            .await;
        let results = match decided {
            Ok(results) => {
                count(&results);
                results
            }
            Err(e) => {
                tracing::error!(error = %e, size = batch.len(), "refresh batch not committed; every request of it fails");
                batch.iter().map(|_| Err(Error::NotCommitted)).collect()
            }
        };
        turns.in_database.fetch_sub(1, Ordering::AcqRel);
        for (pending, result) in batch.drain(..).zip(results) {
            // The client may have gone away; its job stands either way.
            let _ = pending.reply.send(result);
        }
    }
}

/// The committed decisions, in the metrics (replays were counted when first decided).
fn count(results: &[Result<RefreshAnswer, Error>]) {
    use freshet_rules::{SkipReason, Verdict};
    for result in results {
        let Ok(RefreshAnswer::Decided(outcome)) = result else {
            continue;
        };
        if outcome.job_id.is_some() {
            crate::ops::metrics::jobs_created(JobKind::OnDemand.as_str(), 1);
        }
        for account in &outcome.accounts {
            let (outcome, reason) = match account.verdict {
                Verdict::Triggered => ("TRIGGERED", ""),
                Verdict::Skipped(SkipReason::AccountExpired) => ("SKIPPED", "ACCOUNT_EXPIRED"),
                Verdict::Skipped(SkipReason::RateLimited) => ("SKIPPED", "RATE_LIMITED"),
            };
            crate::ops::metrics::refresh_decision(outcome, reason);
        }
    }
}

/// Decides every request of the batch in arrival order against what was read, each
/// decision updating it (a later request sees an earlier one's jobs and keys). A request
/// refused for its own reasons writes nothing.
fn decide_batch(
    read: &mut Batch,
    batch: &[Pending],
    now: DateTime<Utc>,
    clock: &Clock,
    policy: &RefreshPolicy,
) -> (Vec<Result<RefreshAnswer, Error>>, BatchWrites) {
    let mut writes = BatchWrites::default();
    let results = batch
        .iter()
        .map(|pending| {
            let command = &pending.command;
            match replayed(read, &writes, command) {
                Some(answer) => answer,
                // Each partner decides on its own time (the sandbox may have moved it).
                None => {
                    let now = now + clock.offset_of(command.partner.id);
                    decide(command, read, &mut writes, now, policy)
                }
            }
        })
        .collect();
    (results, writes)
}

/// The first answer under the command's `Idempotency-Key` (this batch's or a stored one).
fn replayed(
    read: &Batch,
    writes: &BatchWrites,
    command: &RefreshCommand,
) -> Option<Result<RefreshAnswer, Error>> {
    let key = &command.idempotency.as_ref()?.key;
    let partner = command.partner.id;
    let stored = writes
        .responses
        .iter()
        .find(|(p, k, _)| *p == partner && k == key)
        .map(|(_, _, r)| r)
        .or_else(|| read.answers.get(&(partner, key.clone())))?;
    Some(if stored.user_id == command.user_id {
        Ok(RefreshAnswer::Replayed(stored.clone()))
    } else {
        Err(Error::IdempotencyKeyReused)
    })
}

/// One request, in memory: validate, evaluate with the rules, note the job to write.
fn decide(
    command: &RefreshCommand,
    read: &mut Batch,
    writes: &mut BatchWrites,
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> Result<RefreshAnswer, Error> {
    let partner = command.partner.id;
    if !command.partner.direct_enabled {
        return Err(Error::DirectNotEnabled);
    }
    let user = match read.users.get_mut(&command.user_id) {
        Some(user) if user.partner == partner => user,
        _ => return Err(Error::UserNotFound),
    };
    if user.source == UserSource::Marketplace {
        return Err(Error::MarketplaceUser);
    }

    let decision = freshet_rules::evaluate(&user.accounts, now, policy);
    let job_id = (decision.status == Status::Triggered).then(new_id);
    let outcome = RefreshOutcome {
        job_id,
        status: decision.status,
        next_refresh_available_at: decision.next_refresh_available_at,
        accounts: decision
            .accounts
            .iter()
            .map(|a| AccountVerdict {
                account_id: a.account_id.to_owned(),
                verdict: a.verdict,
            })
            .collect(),
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
            kind: JobKind::OnDemand,
            partner,
            user_id: command.user_id,
            accounts: triggered,
            triggered_at: now,
        });
    }
    if let Some(idempotency) = &command.idempotency {
        let stored = StoredResponse {
            user_id: command.user_id,
            status: outcome.http_status(),
            body: (idempotency.render)(&outcome),
            retry_after: outcome.retry_after,
        };
        writes
            .responses
            .push((partner, idempotency.key.clone(), stored));
    }
    Ok(RefreshAnswer::Decided(outcome))
}
