//! Portal users — partner staff who sign in with an email and a password (argon2id) — and
//! their sessions. A session's cookie holds a random token; only its SHA-256 is stored.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{PortalUsers, StoreError, new_id};
use crate::model::to_ms;

/// A signed-in portal user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUser {
    /// The portal user.
    pub portal_user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their partner.
    pub partner_id: Uuid,
    /// The partner's name.
    pub partner_name: String,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: String,
    email: String,
    partner_id: String,
    partner_name: String,
}

#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: String,
    password_hash: String,
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a portal user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PortalUserError {
    /// No such partner.
    #[error("no partner has the id {0}")]
    UnknownPartner(Uuid),
    /// The email is taken (emails are unique, whatever their case).
    #[error("a portal user with the email {0} exists already")]
    EmailTaken(String),
    /// The email does not look like one.
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    /// Too short a password.
    #[error("the password must be at least 10 characters")]
    WeakPassword,
    /// The database or the hashing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn hash(password: &str) -> Result<String, StoreError> {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).map_err(|e| StoreError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Encoding(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| StoreError::Encoding(e.to_string()))?
        .to_string())
}

impl PortalUsers<'_> {
    /// Creates a portal user of `partner`.
    pub async fn create(
        &self,
        partner: Uuid,
        email: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<Uuid, PortalUserError> {
        let email = email.trim();
        if !email.contains('@')
            || email.len() > 254
            || email.starts_with('@')
            || email.ends_with('@')
        {
            return Err(PortalUserError::BadEmail(email.to_owned()));
        }
        if password.chars().count() < 10 {
            return Err(PortalUserError::WeakPassword);
        }
        let password_hash = hash(password)?;
        let id = new_id();
        // A taken email is the unique index's answer (case-insensitive in both schemas), so
        // concurrent creations with one email cannot both pass. On PostgreSQL the failed
        // insert aborts the transaction, which is dropped (rolled back) on return.
        in_tx!(self, |tx| {
            let known: Option<(i64,)> =
                sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM partners WHERE id = $1")
                    .bind(partner.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            if known.is_none() {
                return Err(PortalUserError::UnknownPartner(partner));
            }
            let inserted = sqlx::query(
                "INSERT INTO portal_users (id, partner_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(partner.to_string())
            .bind(email)
            .bind(&password_hash)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(PortalUserError::EmailTaken(email.to_owned()));
                }
                other => other.map_err(StoreError::from)?,
            };
            tx.commit().await.map_err(StoreError::from)?;
        });
        Ok(id)
    }
}

impl PortalUsers<'_> {
    /// The portal user with this email, and their password's argon2id hash (checking it is
    /// the caller's: it is slow on purpose, and not SQL).
    pub async fn credentials(&self, email: &str) -> Result<Option<(Uuid, String)>, StoreError> {
        // `email = $1` ignores case through the column's collation (NOCASE in SQLite, the
        // `nocase` ICU collation in PostgreSQL).
        let row: Option<CredentialRow> = on_read!(self, |c| {
            sqlx::query_as("SELECT id, password_hash FROM portal_users WHERE email = $1")
                .bind(email.trim())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(|r| Some((Uuid::parse_str(&r.id).ok()?, r.password_hash))))
    }

    /// Opens a session for `user` until `now + ttl`; returns the cookie's token.
    pub async fn open_session(
        &self,
        user: Uuid,
        ttl: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hash = token_hash(&token);
        on_write!(self, |c| {
            sqlx::query(
                "INSERT INTO portal_sessions (token_hash, portal_user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(user.to_string())
            .bind(to_ms(now))
            .bind(to_ms(now + ttl))
            .execute(c)
            .await?;
        });
        Ok(token)
    }

    /// Who holds this session token, if it is valid at `now`.
    pub async fn session(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionUser>, StoreError> {
        let hash = token_hash(token);
        let row: Option<SessionRow> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT u.id AS user_id, u.email, p.id AS partner_id, p.name AS partner_name
             FROM portal_sessions s
             JOIN portal_users u ON u.id = s.portal_user_id JOIN partners p ON p.id = u.partner_id
             WHERE s.token_hash = $1 AND s.expires_at > $2",
            )
            .bind(&hash)
            .bind(to_ms(now))
            .fetch_optional(c)
            .await?
        });
        Ok(row.and_then(|r| {
            Some(SessionUser {
                portal_user_id: Uuid::parse_str(&r.user_id).ok()?,
                email: r.email,
                partner_id: Uuid::parse_str(&r.partner_id).ok()?,
                partner_name: r.partner_name,
            })
        }))
    }

    /// Ends a session (and any expired ones).
    pub async fn end_session(&self, token: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let hash = token_hash(token);
        on_write!(self, |c| {
            sqlx::query("DELETE FROM portal_sessions WHERE token_hash = $1 OR expires_at <= $2")
                .bind(&hash)
                .bind(to_ms(now))
                .execute(c)
                .await?;
        });
        Ok(())
    }
}
