//! Connection sessions and the authorizations in flight at banks. Tokens arrive hashed
//! (SHA-256) and the PKCE verifier sealed: nothing here can replay them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ConnectionSessions, Db, StoreError};
use crate::model::{from_ms, to_ms};

/// Where a session is, as stored (`EXPIRED` is read from the time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredStatus {
    /// Created; no URL opened yet.
    Created,
    /// The user opened a URL.
    InProgress,
    /// The user came back from the bank.
    AwaitingCompletion,
    /// The partner completed it.
    Completed,
    /// It failed.
    Failed,
}

impl StoredStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::InProgress => "IN_PROGRESS",
            Self::AwaitingCompletion => "AWAITING_COMPLETION",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "IN_PROGRESS" => Self::InProgress,
            "AWAITING_COMPLETION" => Self::AwaitingCompletion,
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            _ => Self::Created,
        }
    }
}

/// A connection session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id.
    pub id: Uuid,
    /// Whose.
    pub partner_id: Uuid,
    /// For which user.
    pub user_id: Uuid,
    /// Where the user goes back to.
    pub partner_redirect_url: String,
    /// The partner's own reference, returned unchanged.
    pub correlation_id: Option<String>,
    /// Where it is.
    pub status: StoredStatus,
    /// How the bank part ended (`error` of the redirect), if it did not succeed.
    pub outcome: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its URLs stop working.
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    partner_id: String,
    user_id: String,
    partner_redirect_url: String,
    correlation_id: Option<String>,
    status: String,
    outcome: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl Row {
    fn into_record(self) -> Option<SessionRecord> {
        Some(SessionRecord {
            id: Uuid::parse_str(&self.id).ok()?,
            partner_id: Uuid::parse_str(&self.partner_id).ok()?,
            user_id: Uuid::parse_str(&self.user_id).ok()?,
            partner_redirect_url: self.partner_redirect_url,
            correlation_id: self.correlation_id,
            status: StoredStatus::parse(&self.status),
            outcome: self.outcome,
            created_at: from_ms(self.created_at),
            expires_at: from_ms(self.expires_at),
        })
    }
}

/// An authorization in flight at a bank, taken back by its `state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The session.
    pub session_id: Uuid,
    /// The bank.
    pub bank_id: String,
    /// The consent created at the bank for it.
    pub bank_consent_id: String,
    /// The PKCE verifier, sealed.
    pub verifier: String,
    /// The consent (the bank's id) this authorization renews, if it does.
    pub renews: Option<String>,
}

const COLUMNS: &str = "id, partner_id, user_id, partner_redirect_url, correlation_id, status, outcome, created_at, expires_at";

impl ConnectionSessions<'_> {
    /// Stores a new session.
    pub async fn create(
        &self,
        session: &SessionRecord,
        partner_token_hash: &[u8],
    ) -> Result<(), StoreError> {
        on_write!(self, |c| {
            sqlx::query(
                "INSERT INTO connection_sessions (id, partner_id, user_id, partner_redirect_url, correlation_id,
               partner_token_hash, status, created_at, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)",
            )
            .bind(session.id.to_string())
            .bind(session.partner_id.to_string())
            .bind(session.user_id.to_string())
            .bind(&session.partner_redirect_url)
            .bind(&session.correlation_id)
            .bind(partner_token_hash)
            .bind(session.status.as_str())
            .bind(to_ms(session.created_at))
            .bind(to_ms(session.expires_at))
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Partner `partner`'s session `id`.
    pub async fn get(&self, partner: Uuid, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM connection_sessions WHERE id = $1 AND partner_id = $2");
        let row: Option<Row> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .bind(partner.to_string())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(Row::into_record))
    }

    /// The session `id` whose partnerToken hashes to `hash`.
    pub async fn by_partner_token(
        &self,
        id: Uuid,
        hash: &[u8],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM connection_sessions WHERE id = $1 AND partner_token_hash = $2"
        );
        let row: Option<Row> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .bind(hash)
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(Row::into_record))
    }

    /// Partner `partner`'s session whose termination token hashes to `hash`.
    pub async fn by_termination_token(
        &self,
        partner: Uuid,
        hash: &[u8],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM connection_sessions WHERE termination_token_hash = $1 AND partner_id = $2"
        );
        let row: Option<Row> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(hash)
                .bind(partner.to_string())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(Row::into_record))
    }

    /// Moves session `id` from one of `from` to `to` (with the termination token's hash and
    /// the outcome, when given); whether it moved. One conditional statement: of concurrent
    /// moves from the same state, exactly one moves (on PostgreSQL the losers wait for the
    /// winner's row lock, then re-check the status and find it changed).
    pub async fn advance(
        &self,
        id: Uuid,
        from: &[StoredStatus],
        to: StoredStatus,
        termination_token_hash: Option<&[u8]>,
        outcome: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        // The states travel as JSON for SQLite's json_each, as a text[] for PostgreSQL.
        let moved = match &self.db {
            Db::Sqlite { write, .. } => sqlx::query(
                "UPDATE connection_sessions SET status = $3,
               termination_token_hash = COALESCE($4, termination_token_hash),
               outcome = COALESCE($5, outcome), updated_at = $6
             WHERE id = $1 AND status IN (SELECT value FROM json_each($2))",
            )
            .bind(id.to_string())
            .bind(super::json(&from)?)
            .bind(to.as_str())
            .bind(termination_token_hash)
            .bind(outcome)
            .bind(to_ms(now))
            .execute(write)
            .await?
            .rows_affected(),
            Db::Postgres { pool } => sqlx::query(
                "UPDATE connection_sessions SET status = $3,
               termination_token_hash = COALESCE($4, termination_token_hash),
               outcome = COALESCE($5, outcome), updated_at = $6
             WHERE id = $1 AND status = ANY($2)",
            )
            .bind(id.to_string())
            .bind(&from)
            .bind(to.as_str())
            .bind(termination_token_hash)
            .bind(outcome)
            .bind(to_ms(now))
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(moved == 1)
    }

    /// Remembers an authorization sent to a bank, under its `state`'s hash.
    pub async fn begin_attempt(
        &self,
        state_hash: &[u8],
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_write!(self, |c| {
            sqlx::query(
                "INSERT INTO connection_attempts (state_hash, session_id, bank_id, bank_consent_id, verifier, created_at, renews)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(state_hash)
            .bind(attempt.session_id.to_string())
            .bind(&attempt.bank_id)
            .bind(&attempt.bank_consent_id)
            .bind(&attempt.verifier)
            .bind(to_ms(now))
            .bind(&attempt.renews)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Takes back the authorization whose `state` hashes to `state_hash`, at most once: the
    /// `DELETE ... RETURNING` is the decision (a concurrent second one finds the row gone).
    pub async fn take_attempt(&self, state_hash: &[u8]) -> Result<Option<Attempt>, StoreError> {
        let row: Option<(String, String, String, String, Option<String>)> = on_write!(self, |c| {
            sqlx::query_as(
                "DELETE FROM connection_attempts WHERE state_hash = $1
             RETURNING session_id, bank_id, bank_consent_id, verifier, renews",
            )
            .bind(state_hash)
            .fetch_optional(c)
            .await?
        });
        Ok(
            row.and_then(|(session, bank_id, bank_consent_id, verifier, renews)| {
                Some(Attempt {
                    session_id: Uuid::parse_str(&session).ok()?,
                    bank_id,
                    bank_consent_id,
                    verifier,
                    renews,
                })
            }),
        )
    }

    /// Session `id`, whoever's (the callback, which the state already authenticated).
    pub async fn by_id(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connection_sessions WHERE id = $1");
        let row: Option<Row> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(Row::into_record))
    }
}
