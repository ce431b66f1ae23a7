//! Portal users: partner staff who sign in with an email and a password (argon2id).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError, new_id};
use crate::model::to_ms;

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

impl Store {
    /// Creates a portal user of `partner`.
    pub async fn create_portal_user(
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
        let mut tx = self.begin_write().await?;
        let known: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM partners WHERE id = ?1")
            .bind(partner.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if known.is_none() {
            return Err(PortalUserError::UnknownPartner(partner));
        }
        let id = new_id();
        let inserted = sqlx::query(
            "INSERT INTO portal_users (id, partner_id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(id.to_string())
        .bind(partner.to_string())
        .bind(email)
        .bind(password_hash)
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
        Ok(id)
    }
}
