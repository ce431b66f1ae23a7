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
//!
//! PostgreSQL (`postgres://…`) is the second backend: several freshet replicas on one
//! database. SQL that both dialects read alike is written once (`$1` placeholders, which
//! sqlx's SQLite driver takes too) and run through [`on_read!`], [`on_write!`] or
//! [`in_tx!`], whose body is compiled once per backend; where the dialects differ, the
//! aggregate's function matches on [`Db`] and holds both statements side by side.
//! PostgreSQL's write transactions that SQLite's single writer made serial take one
//! advisory lock ([`SERIAL_LOCK`]) unless the aggregate says how they are serialized
//! (row locks, `SKIP LOCKED` claims, per-user locks).

/// Runs `$body` with `$c` bound to a connection pool for reads: SQLite's read pool, or
/// PostgreSQL's pool. The body is compiled once per backend.
macro_rules! on_read {
    ($store:expr, |$c:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { read, .. } => {
                let $c = read;
                $body
            }
            $crate::store::Db::Postgres { pool, .. } => {
                let $c = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to a pool for one self-contained write statement: SQLite's
/// write pool, or PostgreSQL's pool (the statement commits on its own).
macro_rules! on_write {
    ($store:expr, |$c:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { write, .. } => {
                let $c = write;
                $body
            }
            $crate::store::Db::Postgres { pool, .. } => {
                let $c = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$tx` bound to a write transaction that sees no other writer between
/// its reads and its writes: SQLite's `BEGIN IMMEDIATE`, or on PostgreSQL a transaction
/// holding [`SERIAL_LOCK`]. The body commits (`$tx.commit().await?`); dropping the
/// transaction rolls it back.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { .. } => {
                #[allow(unused_mut)]
                let mut $tx = $store.begin_write().await?;
                $body
            }
            $crate::store::Db::Postgres { .. } => {
                #[allow(unused_mut)]
                let mut $tx = $store.begin_serial_pg().await?;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the executor inside a [`Conn`] (whichever of the four it
/// is): for helpers whose one statement serves both backends, called from inside an
/// [`in_tx!`] body (`helper(&mut *tx, ..)`) or with a pool.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::SqlitePool($c) => $body,
            $crate::store::Conn::Sqlite($c) => $body,
            $crate::store::Conn::PgPool($c) => $body,
            $crate::store::Conn::Postgres($c) => $body,
        }
    };
}

mod accounts;
mod bank_consents;
mod banks;
mod events;
mod gauges;
mod jobs;
mod leader;
mod operations;
mod partners;
mod portal_users;
mod refresh;
mod retention;
mod sessions;
mod transactions;
mod users;
mod wakeups;
pub mod webhooks;
mod work;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Postgres, Sqlite, SqlitePool, Transaction};

pub use accounts::{AccountAtBank, ConnectQuota, Connected, NewAccount};
pub use bank_consents::{BankConsent, SealedTokens};
pub use banks::{BankAnswers, BankRecord};
pub use events::{JobEvent, StoredEvent};
pub use jobs::{ItemTimings, JobSummary, NewJob};
pub use leader::{Leadership, Role};
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

/// The advisory lock (`pg_advisory_xact_lock`) that PostgreSQL write transactions take when
/// they need what SQLite's one writer gives: nothing else writes between their reads and
/// their writes. ("freshet" in ASCII.)
pub const SERIAL_LOCK: i64 = 0x0066_7265_7368_6574;

/// The advisory lock an event-appending transaction holds from its first event to its
/// commit, so that event sequence numbers become visible in order (see `events.rs`).
pub const EVENT_LOG_LOCK: i64 = 0x0066_7265_7368_6575;

/// Which database, with its pools.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// SQLite: one file, one write connection, several readers.
    Sqlite {
        /// The one write connection.
        write: SqlitePool,
        /// Readers, beside the writer (WAL).
        read: SqlitePool,
        /// How the file was opened (its name; a fresh connection for the write probe).
        /// Boxed: it is most of the variant's size, and read only by the probe.
        options: Box<SqliteConnectOptions>,
    },
    /// PostgreSQL: one pool, shared by reads and writes; other replicas use the database too.
    Postgres {
        /// Every connection of this replica.
        pool: PgPool,
    },
}

/// An executor of either backend: a pool, or a transaction's connection. Helpers take
/// `impl Into<Conn>` rather than a generic `sqlx::Executor`: sqlx's higher-ranked executor
/// bounds make rustc fail to prove the callers' futures `Send` ("not general enough").
pub(crate) enum Conn<'a> {
    /// A SQLite pool.
    SqlitePool(&'a SqlitePool),
    /// A SQLite connection (a transaction's).
    Sqlite(&'a mut sqlx::SqliteConnection),
    /// The PostgreSQL pool.
    PgPool(&'a PgPool),
    /// A PostgreSQL connection (a transaction's).
    Postgres(&'a mut sqlx::PgConnection),
}

impl<'a> From<&'a SqlitePool> for Conn<'a> {
    fn from(c: &'a SqlitePool) -> Self {
        Conn::SqlitePool(c)
    }
}

impl<'a> From<&'a mut sqlx::SqliteConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}

impl<'a> From<&'a PgPool> for Conn<'a> {
    fn from(c: &'a PgPool) -> Self {
        Conn::PgPool(c)
    }
}

impl<'a> From<&'a mut sqlx::PgConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::PgConnection) -> Self {
        Conn::Postgres(c)
    }
}

impl<'a, 't> From<&'a mut Transaction<'t, Sqlite>> for Conn<'a> {
    fn from(tx: &'a mut Transaction<'t, Sqlite>) -> Self {
        Conn::Sqlite(tx)
    }
}

impl<'a, 't> From<&'a mut Transaction<'t, Postgres>> for Conn<'a> {
    fn from(tx: &'a mut Transaction<'t, Postgres>) -> Self {
        Conn::Postgres(tx)
    }
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL, shared by replicas.
    Postgres,
}

/// The database.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// Wakes the loops (of every replica) after commits: events appended (SSE streams),
    /// refresh work queued (workers), deliveries made due by a partner's hand (deliverer).
    wakeups: Arc<wakeups::Wakeups>,
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

/// The embedded migrations of `server/migrations` (SQLite).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The embedded migrations of `server/migrations-postgres`: the same schema in PostgreSQL's
/// dialect. Every schema change gets a migration in both directories.
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// How many connections one replica keeps to PostgreSQL when the URL does not say
/// (`?max_connections=N`, read by freshet and taken out of the URL).
pub const DEFAULT_PG_CONNECTIONS: u32 = 16;

impl Store {
    /// Opens the database at `url`: `sqlite://freshet.db` (created when missing) or
    /// `postgres://user@host/db` (which must exist).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url).await?
        } else {
            Self::open_sqlite(url).await?
        };
        let wakeups = match &db {
            Db::Sqlite { .. } => wakeups::Wakeups::local(),
            Db::Postgres { pool } => wakeups::Wakeups::across_replicas(pool),
        };
        Ok(Self { db, wakeups })
    }

    async fn open_sqlite(url: &str) -> Result<Db, StoreError> {
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
        let options = Box::new(write.connect_options().as_ref().clone());
        Ok(Db::Sqlite {
            write,
            read,
            options,
        })
    }

    async fn open_postgres(url: &str) -> Result<Db, StoreError> {
        let (url, connections) = pool_size_of(url);
        let options = PgConnectOptions::from_str(&url)?
            .application_name("freshet")
            // Freshet's promises (a 201 only once its job is on disk) need durable commits,
            // whatever the server's default.
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // A connection PostgreSQL dropped (a restart, `pg_terminate_backend`) is found
            // by the ping before use, not by a client's request.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        Ok(Db::Postgres { pool })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Applies the migrations that are not applied yet (on PostgreSQL, one replica at a
    /// time: sqlx's migrator holds an advisory lock while it runs).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite { write, .. } => MIGRATOR.run(write).await?,
            Db::Postgres { pool } => PG_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.db {
            Db::Sqlite { .. } => &MIGRATOR,
            Db::Postgres { .. } => &PG_MIGRATOR,
        }
    }

    /// Starts a write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`),
    /// so that what it reads cannot change before it writes.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let Db::Sqlite { write, .. } = &self.db else {
            unreachable!("begin_write is SQLite's; in_tx! picks by backend")
        };
        let asked = std::time::Instant::now();
        let tx = write.begin_with("BEGIN IMMEDIATE").await?;
        crate::ops::metrics::db_write_wait(asked.elapsed());
        Ok(tx)
    }

    /// Starts a PostgreSQL transaction holding [`SERIAL_LOCK`] until it ends: among the
    /// replicas, one such transaction at a time (SQLite's one writer, for the writes that
    /// rely on it).
    async fn begin_serial_pg(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.begin_pg().await?;
        let asked = std::time::Instant::now();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SERIAL_LOCK)
            .execute(&mut *tx)
            .await?;
        crate::ops::metrics::db_write_wait(asked.elapsed());
        Ok(tx)
    }

    /// Starts a plain PostgreSQL transaction (read committed).
    async fn begin_pg(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let Db::Postgres { pool } = &self.db else {
            unreachable!("begin_pg is PostgreSQL's; callers match on the backend")
        };
        Ok(pool.begin().await?)
    }

    /// The database's file, unless it lives in memory or in PostgreSQL.
    pub fn file(&self) -> Option<&std::path::Path> {
        let Db::Sqlite { options, .. } = &self.db else {
            return None;
        };
        let path = options.get_filename();
        let name = path.to_string_lossy();
        (!name.is_empty() && !name.starts_with(":memory:") && !name.contains("mode=memory"))
            .then_some(path)
    }

    /// A receiver that changes after each commit that appended events.
    pub fn watch_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wakeups.watch_events()
    }

    /// Wakes the webhook deliverer: deliveries were made due outside the event log.
    pub fn want_deliveries(&self) {
        self.wakeups.raise(wakeups::Kind::Deliveries);
    }

    /// Resolves when [`Store::want_deliveries`] was called (a call before the wait counts).
    pub async fn deliveries_wanted(&self) {
        self.wakeups.deliveries_wanted().await;
    }

    /// A receiver that changes after each commit that queued refresh work.
    pub fn watch_work(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wakeups.watch_work()
    }

    /// Wakes the workers: refresh work was committed.
    pub fn want_work(&self) {
        self.wakeups.raise(wakeups::Kind::Work);
    }

    fn events_committed(&self) {
        self.wakeups.raise(wakeups::Kind::Events);
    }

    /// Whether the database can serve this server: the pools are open, every migration this
    /// binary knows is applied and none it does not know, and it takes a write now. On
    /// SQLite the write probe is `BEGIN IMMEDIATE` then `ROLLBACK` on a connection of its
    /// own (so a stuck probe never holds the server's one writer) that waits at most a
    /// second for the lock: a database another process keeps locked, or a file that turned
    /// read-only, fails it. On PostgreSQL it is a round trip within a second to a server
    /// that is not a read-only standby.
    pub async fn readiness(&self) -> Result<(), String> {
        let applied: Vec<i64> = match &self.db {
            Db::Sqlite { write, read, .. } => {
                if write.is_closed() || read.is_closed() {
                    return Err("the connection pool is closed".to_owned());
                }
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                    .fetch_all(read)
                    .await
            }
            Db::Postgres { pool } => {
                if pool.is_closed() {
                    return Err("the connection pool is closed".to_owned());
                }
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(pool)
                    .await
            }
        }
        .map_err(|e| format!("reading the applied migrations: {e}"))?;
        let known: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        if let Some(missing) = known.iter().find(|v| !applied.contains(v)) {
            return Err(format!("migration {missing} is not applied"));
        }
        if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
            return Err(format!(
                "migration {unknown} is applied but unknown to this binary (a newer freshet?)"
            ));
        }
        match &self.db {
            Db::Sqlite { options, .. } => {
                use sqlx::Connection;
                let probe = async {
                    let mut conn = sqlx::SqliteConnection::connect_with(
                        &SqliteConnectOptions::clone(options)
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
            Db::Postgres { pool } => {
                let probe =
                    sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(pool);
                match tokio::time::timeout(Duration::from_secs(1), probe).await {
                    Ok(Ok(false)) => Ok(()),
                    Ok(Ok(true)) => Err("it is a read-only standby".to_owned()),
                    Ok(Err(e)) => Err(format!("it does not answer: {e}")),
                    Err(_) => Err("it did not answer within a second".to_owned()),
                }
            }
        }
    }

    /// Closes the pools, waiting for connections in use.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { write, read, .. } => {
                write.close().await;
                read.close().await;
            }
            Db::Postgres { pool } => pool.close().await,
        }
    }
}

/// The pool size a PostgreSQL URL asks for (`max_connections=N` in its query, which is
/// freshet's, not libpq's, so it is taken out), and the URL without it.
fn pool_size_of(url: &str) -> (String, u32) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), DEFAULT_PG_CONNECTIONS);
    };
    let mut size = DEFAULT_PG_CONNECTIONS;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("max_connections=") {
            Some(n) => {
                size = n.parse().unwrap_or(DEFAULT_PG_CONNECTIONS).max(2);
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    if rest.is_empty() {
        (base.to_owned(), size)
    } else {
        (format!("{base}?{}", rest.join("&")), size)
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
