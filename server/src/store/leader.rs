//! Leadership among replicas, for the loops that must run on one replica at a time (the
//! scheduler, retention). On PostgreSQL a leader holds a session advisory lock on a
//! connection of its own: the lock lives exactly as long as that session, so a replica that
//! is killed, or whose connection PostgreSQL drops, lets another take over at its next try.
//! On SQLite there is one process: it always leads.

use sqlx::{Connection, PgConnection};

use super::{Db, Store};

/// A loop that runs on one replica at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Queues scheduled refreshes and sends consent notices.
    Scheduler,
    /// Prunes what is past retention.
    Retention,
}

impl Role {
    /// Its advisory lock key (next to the store's other keys).
    fn key(self) -> i64 {
        match self {
            Role::Scheduler => super::SERIAL_LOCK + 16,
            Role::Retention => super::SERIAL_LOCK + 17,
        }
    }
}

/// One replica's claim to a [`Role`].
#[derive(Debug)]
pub struct Leadership {
    store: Store,
    role: Role,
    /// The session that holds the lock, while it does.
    session: Option<PgConnection>,
}

impl Store {
    /// This replica's claim to `role`, not yet tried.
    pub fn leadership(&self, role: Role) -> Leadership {
        Leadership {
            store: self.clone(),
            role,
            session: None,
        }
    }
}

impl Leadership {
    /// Whether this replica leads now: it keeps leading while its session lives, and tries
    /// to take the lead when it does not hold it. Call before each round of the loop.
    pub async fn held(&mut self) -> bool {
        let Db::Postgres { pool } = &self.store.db else {
            return true;
        };
        if let Some(session) = &mut self.session {
            if session.ping().await.is_ok() {
                return true;
            }
            tracing::warn!(role = ?self.role, "lost the session that held the lead");
            self.session = None;
        }
        let taken = async {
            let mut session = PgConnection::connect_with(&pool.connect_options()).await?;
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.role.key())
                .fetch_one(&mut session)
                .await?;
            Ok::<_, sqlx::Error>(taken.then_some(session))
        };
        match taken.await {
            Ok(Some(session)) => {
                tracing::info!(role = ?self.role, "this replica leads");
                self.session = Some(session);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(role = ?self.role, error = %e, "could not try for the lead");
                false
            }
        }
    }
}
