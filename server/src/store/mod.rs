//! All of freshet's SQL, one module and one handle per aggregate (`store.partners()`, `.banks()`,
//! `.portal_users()`, `.users()`, `.accounts()`, `.transactions()`, `.jobs()`, `.work()`,
//! `.events()`, `.subscriptions()`, `.deliveries()`, `.attempts()`; the refresh decision's
//! transaction is [`RefreshWriter`]), so that PostgreSQL can come later as a second
//! implementation, aggregate by aggregate. Rows decode into named structs. Nothing outside
//! this module speaks SQL. SQLite here: one file, WAL, `synchronous=FULL`
//! (a 201 is only sent after its job is on disk), foreign keys on.
//!
//! Two pools: a single write connection (SQLite has one writer; queueing in our pool
//! instead of in SQLite's busy handler means no "database is locked" ever reaches a
//! client) and several read connections, which WAL lets run beside the writer.

mod accounts;
mod bank_consents;
mod banks;
mod events;
mod gauges;
mod jobs;
mod operations;
mod partners;
mod portal_users;
mod refresh;
mod retention;
mod sessions;
mod transactions;
mod users;
pub mod webhooks;
mod work;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use accounts::{AccountAtBank, ConnectQuota, Connected, NewAccount};
pub use bank_consents::{BankConsent, SealedTokens};
pub use banks::{BankAnswers, BankRecord};
pub use events::{JobEvent, StoredEvent};
pub use jobs::{ItemTimings, JobSummary, NewJob};
pub use partners::{ApiKey, CreatedPartner};
pub use portal_users::{PortalUserError, SessionUser};
pub use refresh::{Batch, BatchWrites, LoadedUser, RefreshWriter, StoredResponse};
pub use retention::Pruned;
pub use sessions::{Attempt, SessionRecord, StoredStatus};
pub use transactions::{TransactionFilter, TransactionPage};
pub use users::UserSummary;
pub use work::{ClaimedAccount, Ended, Ending, Fetch, Outcome, PartnerScope, QUOTA_EXCEEDED};

/// What can go wrong below the API. Every variant is an internal error for the client:
/// "not found" and the like are `Option`s and enums of the calling service.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Rows could not be encoded to, or decoded from, the JSON a bulk statement uses.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The operating system refused us randomness for an id or a key.
    #[error("randomness: {0}")]
    Random(String),
}

/// The database.
#[derive(Clone, Debug)]
pub struct Store {
    write: SqlitePool,
    read: SqlitePool,
    options: SqliteConnectOptions,
    /// Bumped after every commit that appended events, so that SSE streams wake at once.
    events_appended: Arc<tokio::sync::watch::Sender<u64>>,
    /// Signalled when deliveries become due by a partner's hand (test, redeliver, resume).
    deliveries_wanted: Arc<tokio::sync::Notify>,
    /// Bumped after every commit that queued refresh work, so that the workers wake at once.
    work_queued: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Declares the store's aggregates: a borrowed handle type each, and the `Store` method that
/// hands it out. Each handle's queries live in the aggregate's module; a handle derefs to
/// the `Store` for its pools.
macro_rules! aggregates {
    ($($(#[$doc:meta])* $handle:ident => $accessor:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug)]
            pub struct $handle<'a>(&'a Store);

            impl std::ops::Deref for $handle<'_> {
                type Target = Store;
                fn deref(&self) -> &Store {
                    self.0
                }
            }
        )+

        impl Store {
            $(
                $(#[$doc])*
                pub fn $accessor(&self) -> $handle<'_> {
                    $handle(self)
                }
            )+
        }
    };
}

aggregates! {
    /// Partners and their API keys.
    Partners => partners,
    /// The banks freshet fetches from.
    Banks => banks,
    /// Users' consents at banks, and their sealed tokens.
    BankConsents => bank_consents,
    /// Connection sessions (the journey) and authorizations in flight at banks.
    ConnectionSessions => sessions,
    /// Portal users and their sessions.
    PortalUsers => portal_users,
    /// A partner's users.
    Users => users,
    /// Connected accounts.
    Accounts => accounts,
    /// Stored transactions.
    Transactions => transactions,
    /// Refresh jobs and their items.
    Jobs => jobs,
    /// The refresh work queue: claims and endings of job items, scheduled jobs.
    WorkQueue => work,
    /// The event log.
    Events => events,
    /// Webhook subscriptions.
    Subscriptions => subscriptions,
    /// The webhook delivery queue.
    Deliveries => deliveries,
    /// The webhook attempt log.
    Attempts => attempts,
}

/// The embedded migrations of `server/migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating when missing) the database at `url`, e.g. `sqlite://freshet.db`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        // No ping before each acquire: it costs a round trip to SQLite's worker thread per
        // transaction, and a local file does not drop connections.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        let options = write.connect_options().as_ref().clone();
        let (events_appended, _) = tokio::sync::watch::channel(0);
        Ok(Self {
            write,
            read,
            options,
            events_appended: Arc::new(events_appended),
            deliveries_wanted: Arc::new(tokio::sync::Notify::new()),
            work_queued: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Applies the migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.write).await?;
        Ok(())
    }

    /// Starts a write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`),
    /// so that what it reads cannot change before it writes.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let asked = std::time::Instant::now();
        let tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        crate::ops::metrics::db_write_wait(asked.elapsed());
        Ok(tx)
    }

    /// The database's file, unless it lives in memory.
    pub fn file(&self) -> Option<&std::path::Path> {
        let path = self.options.get_filename();
        let name = path.to_string_lossy();
        (!name.is_empty() && !name.starts_with(":memory:") && !name.contains("mode=memory"))
            .then_some(path)
    }

    /// A receiver that changes after each commit that appended events.
    pub fn watch_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events_appended.subscribe()
    }

    /// Wakes the webhook deliverer: deliveries were made due outside the event log.
    pub fn want_deliveries(&self) {
        self.deliveries_wanted.notify_one();
    }

    /// Resolves when [`Store::want_deliveries`] was called (a call before the wait counts).
    pub async fn deliveries_wanted(&self) {
        self.deliveries_wanted.notified().await;
    }

    /// A receiver that changes after each commit that queued refresh work.
    pub fn watch_work(&self) -> tokio::sync::watch::Receiver<u64> {
        self.work_queued.subscribe()
    }

    /// Wakes the workers: refresh work was committed.
    pub fn want_work(&self) {
        self.work_queued.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn events_committed(&self) {
        self.events_appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether the database can serve this server: the pools are open, every migration this
    /// binary knows is applied and none it does not know, and it takes a write now. The write
    /// probe is `BEGIN IMMEDIATE` then `ROLLBACK` on a connection of its own (so a stuck
    /// probe never holds the server's one writer) that waits at most a second for the lock:
    /// a database another process keeps locked, or a file that turned read-only, fails it.
    pub async fn readiness(&self) -> Result<(), String> {
        use sqlx::Connection;
        if self.write.is_closed() || self.read.is_closed() {
            return Err("the connection pool is closed".to_owned());
        }
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.read)
                .await
                .map_err(|e| format!("reading the applied migrations: {e}"))?;
        let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        if let Some(missing) = known.iter().find(|v| !applied.contains(v)) {
            return Err(format!("migration {missing} is not applied"));
        }
        if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
            return Err(format!(
                "migration {unknown} is applied but unknown to this binary (a newer freshet?)"
            ));
        }
        let probe = async {
            let mut conn = sqlx::SqliteConnection::connect_with(
                &self
                    .options
                    .clone()
                    .create_if_missing(false)
                    .busy_timeout(Duration::from_secs(1)),
            )
            .await?;
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
            sqlx::query("ROLLBACK").execute(&mut conn).await?;
            conn.close().await
        };
        probe
            .await
            .map_err(|e| format!("it does not take a write: {e}"))
    }

    /// Closes both pools, waiting for connections in use.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

pub(crate) use crate::model::new_id;
pub use gauges::Gauges;
pub use operations::{EndedAttempt, EndedFetch, PartnerDay};

/// A page of rows fetched one beyond `limit` (`LIMIT limit + 1`): the first `limit`,
/// converted, and whether more follow.
fn page_of<R, T>(rows: Vec<R>, limit: u32, convert: impl FnMut(R) -> Option<T>) -> (Vec<T>, bool) {
    let more = rows.len() > limit as usize;
    let page = rows
        .into_iter()
        .take(limit as usize)
        .filter_map(convert)
        .collect();
    (page, more)
}

/// A value as the JSON text that a bulk statement reads with `json_each`.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encoding(e.to_string()))
}
