//! Waking the loops when work is committed: inside one process a watch channel per kind of
//! work; across PostgreSQL replicas, `NOTIFY freshet, '<kind>'` after the commit and a
//! `LISTEN freshet` connection per replica that wakes its own loops. Notifications are hints
//! only: every loop also polls (a replica that was down, or a listener that reconnected,
//! loses nothing but a few milliseconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};

/// The channel every replica listens on; the payload names the kind of work.
const CHANNEL: &str = "freshet";

/// Kinds of work, as bits of a pending set and as notification payloads.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    /// Events were appended (SSE streams, the deliverer).
    Events = 1,
    /// Refresh work was queued (the workers).
    Work = 2,
    /// Deliveries became due outside the event log (the deliverer).
    Deliveries = 4,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Events, Kind::Work, Kind::Deliveries];

    fn payload(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Work => "work",
            Kind::Deliveries => "deliveries",
        }
    }

    fn parse(payload: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.payload() == payload)
    }
}

/// This process's wake-ups, and (on PostgreSQL) the other replicas'.
#[derive(Debug)]
pub(super) struct Wakeups {
    events_appended: watch::Sender<u64>,
    deliveries_wanted: Notify,
    work_queued: watch::Sender<u64>,
    /// Kinds raised since the notifier last sent; `None` on SQLite (one process).
    outgoing: Option<Arc<Outgoing>>,
}

#[derive(Debug, Default)]
struct Outgoing {
    pending: AtomicU8,
    raised: Notify,
}

impl Wakeups {
    /// Wake-ups within this process only.
    pub(super) fn local() -> Arc<Self> {
        Arc::new(Self::new(None))
    }

    fn new(outgoing: Option<Arc<Outgoing>>) -> Self {
        Self {
            events_appended: watch::channel(0).0,
            deliveries_wanted: Notify::new(),
            work_queued: watch::channel(0).0,
            outgoing,
        }
    }

    /// Wake-ups shared with every replica on `pool`'s database: starts the notifier (which
    /// coalesces a burst of commits into one `NOTIFY` per kind) and the listener.
    pub(super) fn across_replicas(pool: &PgPool) -> Arc<Self> {
        let outgoing = Arc::new(Outgoing::default());
        let wakeups = Arc::new(Self::new(Some(Arc::clone(&outgoing))));
        tokio::spawn(notify(pool.clone(), outgoing, Arc::downgrade(&wakeups)));
        tokio::spawn(listen(pool.clone(), Arc::downgrade(&wakeups)));
        wakeups
    }

    /// Work of `kind` was committed: wake this process's loops, and tell the other replicas.
    pub(super) fn raise(&self, kind: Kind) {
        self.wake_here(kind);
        if let Some(out) = &self.outgoing {
            out.pending.fetch_or(kind as u8, Ordering::AcqRel);
            out.raised.notify_one();
        }
    }

    fn wake_here(&self, kind: Kind) {
        match kind {
            Kind::Events => self.events_appended.send_modify(|n| *n = n.wrapping_add(1)),
            Kind::Work => self.work_queued.send_modify(|n| *n = n.wrapping_add(1)),
            Kind::Deliveries => self.deliveries_wanted.notify_one(),
        }
    }

    pub(super) fn watch_events(&self) -> watch::Receiver<u64> {
        self.events_appended.subscribe()
    }

    pub(super) fn watch_work(&self) -> watch::Receiver<u64> {
        self.work_queued.subscribe()
    }

    pub(super) async fn deliveries_wanted(&self) {
        self.deliveries_wanted.notified().await;
    }
}

/// Sends what was raised, one `pg_notify` per kind per round, until the store is gone.
async fn notify(pool: PgPool, out: Arc<Outgoing>, wakeups: std::sync::Weak<Wakeups>) {
    loop {
        if wakeups.strong_count() == 0 {
            return;
        }
        let raised = out.raised.notified();
        let pending = out.pending.swap(0, Ordering::AcqRel);
        if pending == 0 {
            // Waking now and then to notice that the store is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), raised).await;
            continue;
        }
        if pool.is_closed() {
            return;
        }
        for kind in Kind::ALL.into_iter().filter(|k| pending & (*k as u8) != 0) {
            // A lost hint costs a poll interval, not correctness: errors are only logged.
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(kind.payload())
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "a wake-up for the other replicas was not sent");
            }
        }
    }
}

/// Wakes this replica's loops on every notification; after a reconnection (notifications
/// may have been missed meanwhile) wakes them all.
async fn listen(pool: PgPool, wakeups: std::sync::Weak<Wakeups>) {
    loop {
        if pool.is_closed() || wakeups.strong_count() == 0 {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if let Some(w) = wakeups.upgrade() {
            Kind::ALL.into_iter().for_each(|k| w.wake_here(k));
        }
        loop {
            // try_recv: `None` when the connection was lost (it reconnects on the next call).
            let next = tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await;
            let Some(w) = wakeups.upgrade() else { return };
            match next {
                Err(_) => {
                    if pool.is_closed() {
                        return;
                    }
                }
                Ok(Ok(Some(n))) => {
                    if let Some(kind) = Kind::parse(n.payload()) {
                        w.wake_here(kind);
                    }
                }
                Ok(Ok(None)) => Kind::ALL.into_iter().for_each(|k| w.wake_here(k)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
