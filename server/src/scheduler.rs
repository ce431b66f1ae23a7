//! Scheduled refreshes: every account with valid consent is fetched again once its data is
//! older than the schedule's period (6 hours by default), whatever the on-demand interval.
//! The scheduler only queues jobs (`SCHEDULED`); the workers fetch them. It also sends the
//! consent notices that fall due (expiring in 7 days, in 1 day, expired).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use crate::clock::Clock;
use crate::store::{PartnerScope, Store};

/// Queues what is due now; returns how many accounts. Tests call this directly.
pub async fn run_once(
    store: &Store,
    clock: &Clock,
    period: TimeDelta,
) -> Result<usize, crate::store::StoreError> {
    // Partners on a time of their own (the sandbox clock) are scheduled on it.
    let shifted = clock.partner_offsets();
    let others: Vec<_> = shifted.iter().map(|(p, _)| *p).collect();
    let now = clock.now();
    let mut total = schedule(store, now, now, period, PartnerScope::AllBut(&others)).await?;
    for (partner, offset) in shifted {
        total += schedule(
            store,
            now,
            now + offset,
            period,
            PartnerScope::Only(partner),
        )
        .await?;
    }
    Ok(total)
}

/// Accounts queued per transaction.
const BATCH: u32 = 500;
/// The pause after a full batch. Catching up on a backlog (a first start on imported data,
/// a scheduler that was down) queued batch after batch as fast as the one writer committed
/// them, and the API's refresh commits waited behind every one (p99 ~850 ms measured with
/// `scripts/loadbench` on 600,000 due accounts). Paced, it queues at most 5,000 accounts a
/// second — still ahead of what the engine fetches — and leaves the writer to the API.
const PAUSE: Duration = Duration::from_millis(100);

/// Schedules the accounts of `partners`, whose time is `as_of` (the server's is `now`).
async fn schedule(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
    as_of: chrono::DateTime<chrono::Utc>,
    period: TimeDelta,
    partners: PartnerScope<'_>,
) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    loop {
        let n = store
            .work()
            .schedule_refreshes(now, as_of, as_of - period, BATCH, partners)
            .await?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Sends the consent notices due now (`v1.consent.expiring` at 7 days and 1 day,
/// `v1.consent.expired`), each once across restarts; returns how many. Tests call this
/// directly.
pub async fn announce_consents(
    store: &Store,
    clock: &Clock,
) -> Result<usize, crate::store::StoreError> {
    store.bank_consents().announce_due(clock.now()).await
}

/// Checks every 30 seconds of real time (the sandbox clock may jump in between), on one
/// replica at a time.
pub fn spawn(store: Store, clock: Arc<Clock>, period: TimeDelta) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lead = store.leadership(crate::store::Role::Scheduler);
        loop {
            if !lead.held().await {
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
            match run_once(&store, &clock, period).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(accounts = n, "scheduled refreshes queued"),
                Err(e) => tracing::error!(error = %e, "scheduling refreshes failed"),
            }
            match announce_consents(&store, &clock).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(notices = n, "consent notices sent"),
                Err(e) => tracing::error!(error = %e, "sending consent notices failed"),
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
}
