//! The refresh engine: claims accounts with open job items (a lease, so that a crashed
//! worker's accounts are taken again), fetches each once from its bank with retries, and
//! ends their items in groups (`WorkQueue::finish_many`: one transaction for many accounts).
//!
//! [`Worker::spawn`] runs it as a pipeline: a slot freed by a committed fetch is refilled at
//! once, new work wakes it the moment it is committed (not a timer), claims come in batches
//! and skip banks whose share of calls is taken (each bank's gate: its limits, its `429`
//! pause, its circuit breaker), so a slow or hung bank holds only its own accounts. While a
//! worker lives the leases of the accounts it holds are extended, so that its accounts
//! waiting for their bank are not taken by another — only those: an account whose commit it
//! gave up on (the database down for longer than a lease) or whose fetch it abandoned (the
//! database failed mid-fetch) is let go, its lease ends, and it runs again.
//! [`Worker::run_pending`] is one claim-fetch-commit round, for tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::{Notify, mpsc};

use crate::bank::retry::RetryPolicy;
use crate::bank::{Bank, BankAccount, BankError, FetchedTransaction};
use crate::clock::Clock;
use crate::random::random_unit;
use crate::store::{ClaimedAccount, Ended, Ending, Fetch, Outcome};
use crate::store::{Store, StoreError};

/// How far before the last refresh each fetch reads again: transactions that were pending
/// then may have been booked since (some under a new id); what is unchanged is skipped.
pub const PENDING_LOOKBACK: TimeDelta = TimeDelta::days(3);

/// The most fetches one commit ends.
const COMMIT_BATCH: usize = 512;

/// One worker (several may run, in one process or many: leases keep them apart).
#[derive(Clone)]
pub struct Worker {
    store: Store,
    bank: Arc<dyn Bank>,
    clock: Arc<Clock>,
    owner: String,
    /// How long a claim holds before another worker may take the account (extended while
    /// the worker lives).
    pub lease: TimeDelta,
    /// Retries inside the job.
    pub retry: RetryPolicy,
    /// Accounts claimed and not yet committed, at most (each bank's own share of calls is
    /// its gate's).
    pub concurrency: usize,
    /// Accounts claimed per statement, at most.
    pub batch: u32,
    /// The most transactions one partner's users may hold (the sandbox's quota, which
    /// bounds its disk however far its clock is moved); `None`: no limit.
    pub transactions_per_partner: Option<u32>,
    /// The accounts this worker holds: claimed, and neither committed nor let go. Only
    /// their leases are extended.
    held: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A fetch, ended, waiting for its commit.
struct Done {
    account: ClaimedAccount,
    fetched: Result<(Vec<FetchedTransaction>, Option<String>), BankError>,
    ending: Ending,
}

impl Done {
    fn ended(&self) -> Ended<'_> {
        Ended {
            account: &self.account,
            outcome: match &self.fetched {
                Ok((transactions, balance)) => Outcome::Fetched(Fetch {
                    transactions,
                    balance: balance.as_deref(),
                }),
                Err(e) => Outcome::Failed {
                    code: e.code(),
                    retryable: e.retryable(),
                    consent_revoked: *e == BankError::ConsentRevoked,
                },
            },
            ending: self.ending,
        }
    }
}

impl Worker {
    /// A worker with a fresh owner id, a 60 s lease, the default retry policy, up to 4,096
    /// accounts in hand, claimed 256 at a time.
    pub fn new(store: Store, bank: Arc<dyn Bank>, clock: Arc<Clock>) -> Self {
        Self {
            store,
            bank,
            clock,
            owner: format!("worker-{}", uuid::Uuid::new_v4()),
            lease: TimeDelta::seconds(60),
            retry: RetryPolicy::default(),
            concurrency: 4096,
            batch: 256,
            transactions_per_partner: None,
            held: Arc::default(),
        }
    }

    /// Takes `account` into the held set; `false` when it is held already (a claim of an
    /// account whose fetch is still waiting for its commit, after its lease ran out while
    /// the database was away: that commit ends the new items too).
    fn hold(&self, account: &str) -> bool {
        self.held
            .lock()
            .map_or(true, |mut held| held.insert(account.to_owned()))
    }

    /// Lets `accounts` go: their leases are no longer extended.
    fn let_go<'a>(&self, accounts: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut held) = self.held.lock() {
            for account in accounts {
                held.remove(account);
            }
        }
    }

    /// This worker's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    async fn claim(&self, limit: u32) -> Result<Vec<ClaimedAccount>, StoreError> {
        let now = self.clock.now();
        self.store
            .work()
            .claim(
                &self.owner,
                now,
                now + self.lease,
                limit,
                &self.bank.crowded(),
            )
            .await
    }

    /// One round: claims up to `limit` accounts, fetches them all, ends them in one commit;
    /// returns how many it claimed.
    pub async fn run_pending(&self, limit: u32) -> Result<usize, StoreError> {
        let claimed = self.claim(limit).await?;
        let n = claimed.len();
        let done = futures_util::future::join_all(claimed.into_iter().map(|a| self.fetch(a))).await;
        self.commit(&done).await?;
        Ok(n)
    }

    /// The account's partner's now: its data was fetched as of then.
    fn partner_now(&self, account: &ClaimedAccount) -> chrono::DateTime<chrono::Utc> {
        uuid::Uuid::parse_str(&account.partner_id)
            .map_or_else(|_| self.clock.now(), |p| self.clock.now_for(p))
    }

    /// Fetches the account's transactions (retrying) and its balance, side by side: the
    /// balance moves with the transactions; a bank that does not answer it leaves the stored
    /// one (the fetch itself succeeded).
    async fn fetch(&self, account: ClaimedAccount) -> Done {
        let started = std::time::Instant::now();
        let bank_account = BankAccount {
            bank_id: account.bank.bank_id.clone(),
            consent_id: account.bank.consent_id.clone(),
            account_id: account.bank.account_id.clone(),
        };
        let (transactions, balance) = tokio::join!(
            self.transactions(&bank_account, &account),
            self.bank.balance(&bank_account)
        );
        let fetched = transactions.map(|t| {
            let balance = balance.unwrap_or_else(|e| {
                tracing::warn!(account = %account.account_id, error = %e, "reading the balance failed");
                None
            });
            (t, balance)
        });
        crate::ops::metrics::bank_fetch(
            &account.bank.bank_id,
            fetched
                .as_ref()
                .map_or_else(BankError::code, |_| "SUCCEEDED"),
            started.elapsed(),
        );
        Done {
            ending: Ending {
                now: self.clock.now(),
                as_of: self.partner_now(&account),
                transactions_quota: self.transactions_per_partner,
            },
            account,
            fetched,
        }
    }

    async fn transactions(
        &self,
        bank_account: &BankAccount,
        account: &ClaimedAccount,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        let mut attempt = 1;
        loop {
            match self
                .bank
                .transactions(
                    bank_account,
                    account.last_refresh.map(|at| at - PENDING_LOOKBACK),
                )
                .await
            {
                Ok(transactions) => return Ok(transactions),
                Err(e) => match self.retry.next_delay(attempt, &e, random_unit()) {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// Ends `done` in one transaction. If that fails as a whole (one account's data the
    /// database refuses), each is tried alone, so one cannot hold back the others; what
    /// still fails is left to its lease, and runs again.
    async fn commit(&self, done: &[Done]) -> Result<(), StoreError> {
        // A fetch the database failed is abandoned, not ended: it runs again.
        let (abandoned, done): (Vec<&Done>, Vec<&Done>) = done
            .iter()
            .partition(|d| matches!(d.fetched, Err(BankError::Storage(_))));
        for d in abandoned {
            tracing::warn!(account = %d.account.account_id, "the database failed mid-fetch; the account runs again when its lease ends");
        }
        if done.is_empty() {
            return Ok(());
        }
        let ended: Vec<Ended<'_>> = done.iter().map(|d| d.ended()).collect();
        let work = self.store.work();
        let held = match work.finish_many(&self.owner, &ended).await {
            Ok(held) => held,
            Err(e) if ended.len() > 1 => {
                tracing::warn!(error = %e, n = ended.len(), "committing a batch of fetches failed; one by one");
                let mut held = Vec::with_capacity(ended.len());
                for one in &ended {
                    match work
                        .finish_many(&self.owner, std::slice::from_ref(one))
                        .await
                    {
                        Ok(h) => held.extend(h),
                        Err(e) => {
                            tracing::error!(account = %one.account.account_id, error = %e, "ending a job item failed; its lease will expire and it runs again");
                            held.push(true);
                        }
                    }
                }
                held
            }
            Err(e) => return Err(e),
        };
        for (d, held) in done.iter().zip(held) {
            if !held {
                tracing::warn!(account = %d.account.account_id, "lease lost before the fetch ended; another worker owns it");
            }
        }
        Ok(())
    }

    /// Runs the engine in the background (see the module's documentation).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run().await })
    }

    async fn run(self) {
        let in_hand = Arc::new(AtomicUsize::new(0));
        let freed = Arc::new(Notify::new());
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
        tokio::spawn(
            self.clone()
                .committer(done_rx, Arc::clone(&in_hand), Arc::clone(&freed)),
        );
        tokio::spawn(self.clone().keep_leases());
        let mut wanted = self.store.watch_work();
        loop {
            wanted.mark_unchanged();
            let room = self
                .concurrency
                .saturating_sub(in_hand.load(Ordering::Acquire));
            let want = u32::try_from(room).unwrap_or(u32::MAX).min(self.batch);
            let mut full = false;
            if want > 0 {
                match self.claim(want).await {
                    Ok(claimed) => {
                        full = claimed.len() == want as usize;
                        let claimed: Vec<ClaimedAccount> = claimed
                            .into_iter()
                            .filter(|a| self.hold(&a.account_id))
                            .collect();
                        in_hand.fetch_add(claimed.len(), Ordering::AcqRel);
                        for account in claimed {
                            let me = self.clone();
                            let done_tx = done_tx.clone();
                            tokio::spawn(async move {
                                let _ = done_tx.send(me.fetch(account).await);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming refresh work failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if full {
                continue;
            }
            // Nothing more to claim (or no room): until new work is committed, a slot is
            // freed, or — for leases that ran out and banks that were crowded — a second.
            tokio::select! {
                _ = wanted.changed() => {}
                () = freed.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Commits ended fetches in groups: whatever has ended while the previous commit ran.
    async fn committer(
        self,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
        in_hand: Arc<AtomicUsize>,
        freed: Arc<Notify>,
    ) {
        let mut batch = Vec::with_capacity(COMMIT_BATCH);
        while done_rx.recv_many(&mut batch, COMMIT_BATCH).await > 0 {
            crate::ops::metrics::commit_batch(batch.len());
            // A database that is away (restarting, connections dropped) is waited for, up to
            // a lease: the fetches are in hand and their leases are kept meanwhile. Retrying
            // is safe: a commit is all or nothing, and one that did land holds no lease any
            // more, so a retry writes nothing.
            let give_up =
                std::time::Instant::now() + self.lease.to_std().unwrap_or(Duration::from_secs(60));
            let mut pause = Duration::from_millis(100);
            loop {
                match self.commit(&batch).await {
                    Ok(()) => break,
                    Err(e) if std::time::Instant::now() + pause < give_up => {
                        tracing::warn!(error = %e, n = batch.len(), "committing fetches failed; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, n = batch.len(), "committing fetches failed; letting them go: they run again when their leases end");
                        break;
                    }
                }
            }
            self.let_go(batch.iter().map(|d| d.account.account_id.as_str()));
            in_hand.fetch_sub(batch.len(), Ordering::AcqRel);
            batch.clear();
            freed.notify_one();
        }
    }

    /// Extends the leases of the accounts this worker holds a third of the way through,
    /// while it lives.
    async fn keep_leases(self) {
        let every = (self.lease / 3)
            .to_std()
            .unwrap_or(Duration::from_secs(20))
            .max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let until = self.clock.now() + self.lease;
            let held: Vec<String> = self
                .held
                .lock()
                .map(|h| h.iter().cloned().collect())
                .unwrap_or_default();
            if held.is_empty() {
                continue;
            }
            if let Err(e) = self
                .store
                .work()
                .extend_leases(&self.owner, &held, until)
                .await
            {
                tracing::warn!(error = %e, "extending the worker's leases failed");
            }
        }
    }
}
