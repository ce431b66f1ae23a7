//! The refresh workers: claim accounts with open job items (a lease, so that a crashed
//! worker's accounts are taken again), fetch each once from its bank with retries, and end
//! its items in one transaction (`Store::finish`). `run_pending` is the whole of one round,
//! public so that tests drive it step by step; `spawn` loops it in the background.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Semaphore;

use crate::bank::retry::RetryPolicy;
use crate::bank::{Bank, BankAccount, BankError, FetchedTransaction};
use crate::clock::Clock;
use crate::random::random_unit;
use crate::store::{ClaimedAccount, Ending, Fetch, Outcome};
use crate::store::{Store, StoreError};

/// How far before the last refresh each fetch reads again: transactions that were pending
/// then may have been booked since (some under a new id); what is unchanged is skipped.
pub const PENDING_LOOKBACK: TimeDelta = TimeDelta::days(3);

/// One worker (several may run, in one process or many: leases keep them apart).
#[derive(Clone)]
pub struct Worker {
    store: Store,
    bank: Arc<dyn Bank>,
    clock: Arc<Clock>,
    owner: String,
    /// How long a claim holds before another worker may take the account.
    pub lease: TimeDelta,
    /// Retries inside the job.
    pub retry: RetryPolicy,
    /// Concurrent bank calls.
    pub concurrency: usize,
    /// The most transactions one partner's users may hold (the sandbox's quota, which
    /// bounds its disk however far its clock is moved); `None`: no limit.
    pub transactions_per_partner: Option<u32>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker with a fresh owner id, a 60 s lease, the default retry policy and 16 calls at once.
    pub fn new(store: Store, bank: Arc<dyn Bank>, clock: Arc<Clock>) -> Self {
        Self {
            store,
            bank,
            clock,
            owner: format!("worker-{}", uuid::Uuid::new_v4()),
            lease: TimeDelta::seconds(60),
            retry: RetryPolicy::default(),
            concurrency: 16,
            transactions_per_partner: None,
        }
    }

    /// This worker's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims up to `limit` accounts, fetches and ends each; returns how many it claimed.
    pub async fn run_pending(&self, limit: u32) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let claimed = self
            .store
            .work()
            .claim(&self.owner, now, now + self.lease, limit)
            .await?;
        let n = claimed.len();
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for account in claimed {
            let worker = self.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                worker.fetch_and_finish(&account).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "ending a job item failed; its lease will expire and it runs again")
                }
                Err(e) => {
                    tracing::error!(error = %e, "a fetch task panicked; its lease will expire and it runs again")
                }
                Ok(Ok(())) => {}
            }
        }
        Ok(n)
    }

    /// The account's partner's now: its data was fetched as of then.
    fn partner_now(&self, account: &ClaimedAccount) -> chrono::DateTime<chrono::Utc> {
        uuid::Uuid::parse_str(&account.partner_id)
            .map_or_else(|_| self.clock.now(), |p| self.clock.now_for(p))
    }

    async fn fetch_and_finish(&self, account: &ClaimedAccount) -> Result<(), StoreError> {
        let fetched = self.fetch(account).await;
        // The balance moves with the transactions; a bank that does not answer it leaves
        // the stored one (the fetch itself succeeded).
        let balance = match &fetched {
            Ok(_) => self.bank.balance(&self.bank_account(account)).await.unwrap_or_else(|e| {
                tracing::warn!(account = %account.account_id, error = %e, "reading the balance failed");
                None
            }),
            Err(_) => None,
        };
        let outcome = match &fetched {
            Ok(transactions) => Outcome::Fetched(Fetch {
                transactions,
                balance: balance.as_deref(),
            }),
            Err(e) => Outcome::Failed {
                code: e.code(),
                retryable: e.retryable(),
                consent_revoked: *e == BankError::ConsentRevoked,
            },
        };
        if !self
            .store
            .work()
            .finish(
                &self.owner,
                account,
                outcome,
                Ending {
                    now: self.clock.now(),
                    as_of: self.partner_now(account),
                    transactions_quota: self.transactions_per_partner,
                },
            )
            .await?
        {
            tracing::warn!(account = %account.account_id, "lease lost before the fetch ended; another worker owns it");
        }
        Ok(())
    }

    fn bank_account(&self, account: &ClaimedAccount) -> BankAccount {
        BankAccount {
            bank_id: account.bank.bank_id.clone(),
            consent_id: account.bank.consent_id.clone(),
            account_id: account.bank.account_id.clone(),
        }
    }

    async fn fetch(&self, account: &ClaimedAccount) -> Result<Vec<FetchedTransaction>, BankError> {
        let bank_account = self.bank_account(account);
        let mut attempt = 1;
        loop {
            match self
                .bank
                .transactions(
                    &bank_account,
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

    /// Runs rounds forever in the background: at once while there is work, every 200 ms when idle.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_pending(64).await {
                    Ok(0) => tokio::time::sleep(Duration::from_millis(200)).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "worker round failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }
}
