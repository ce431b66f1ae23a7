//! Partners and their API keys. A key is stored as its SHA-256 (keys are 192 random bits, so
//! a fast hash is enough) with its first characters, to recognise it by.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Partners, StoreError, new_id};
use crate::model::{Partner, from_ms, to_ms};

/// A partner just created, with its first API key in clear (shown once, stored hashed).
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedPartner {
    /// The new partner's id.
    pub partner_id: Uuid,
    /// The key, `fsk_` and 48 hex digits.
    pub api_key: String,
}

impl std::fmt::Debug for CreatedPartner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPartner")
            .field("partner_id", &self.partner_id)
            .field("api_key", &"fsk_…")
            .finish()
    }
}

/// An API key as it is listed (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's id.
    pub id: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct PartnerRow {
    id: String,
    name: String,
    /// 0 or 1: an integer column in both schemas (PostgreSQL does not decode BIGINT as bool).
    direct_enabled: i64,
}

impl PartnerRow {
    fn into_partner(self) -> Option<Partner> {
        Some(Partner {
            id: Uuid::parse_str(&self.id).ok()?,
            name: self.name,
            direct_enabled: self.direct_enabled != 0,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates a key for `partner` on `conn` (the caller's transaction, or a pool: it is one
/// statement), on either backend: the one place a key is made.
async fn insert_key(
    conn: impl Into<super::Conn<'_>>,
    partner: Uuid,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let mut bytes = [0_u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("fsk_{hex}");
    on_conn!(conn.into(), |c| {
        sqlx::query("INSERT INTO api_keys (id, partner_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(new_id().to_string())
            .bind(partner.to_string())
            .bind(key_hash(&key))
            .bind(key[..12].to_owned())
            .bind(to_ms(now))
            .execute(c)
            .await?;
    });
    Ok(key)
}

impl Partners<'_> {
    /// Creates a partner and its first API key.
    pub async fn create(
        &self,
        name: &str,
        direct_enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<CreatedPartner, StoreError> {
        let partner_id = new_id();
        // Two inserts, all or nothing. (On PostgreSQL the serial lock is more than they need;
        // a partner is created once in a long while.)
        let api_key = in_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO partners (id, name, direct_enabled, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(partner_id.to_string())
            .bind(name)
            .bind(i64::from(direct_enabled))
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
            let api_key = insert_key(&mut *tx, partner_id, now).await?;
            tx.commit().await?;
            api_key
        });
        Ok(CreatedPartner {
            partner_id,
            api_key,
        })
    }

    /// The partner holding this (unrevoked) key. Every API request asks: one round trip
    /// (the hash binds as a BLOB in SQLite, a BYTEA in PostgreSQL).
    pub async fn by_key(&self, key: &str) -> Result<Option<Partner>, StoreError> {
        let hash = key_hash(key);
        let row: Option<PartnerRow> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT p.id, p.name, p.direct_enabled FROM api_keys k JOIN partners p ON p.id = k.partner_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            )
            .bind(&hash)
            .fetch_optional(c)
            .await?
        });
        Ok(row.and_then(PartnerRow::into_partner))
    }

    /// A partner by its id.
    pub async fn by_id(&self, id: Uuid) -> Result<Option<Partner>, StoreError> {
        let row: Option<PartnerRow> = on_read!(self, |c| {
            sqlx::query_as("SELECT id, name, direct_enabled FROM partners WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(PartnerRow::into_partner))
    }

    /// Whether any partner exists (the demo seeds only an empty database).
    pub async fn any(&self) -> Result<bool, StoreError> {
        let (n,): (i64,) = on_read!(self, |c| {
            sqlx::query_as("SELECT COUNT(*) FROM partners")
                .fetch_one(c)
                .await?
        });
        Ok(n > 0)
    }

    /// `partner`'s API keys, newest first.
    pub async fn keys(&self, partner: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<ApiKeyRow> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE partner_id = $1 ORDER BY created_at DESC, id DESC",
            )
            .bind(partner.to_string())
            .fetch_all(c)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| ApiKey {
                id: r.id,
                prefix: r.prefix,
                created_at: from_ms(r.created_at),
                revoked_at: r.revoked_at.map(from_ms),
            })
            .collect())
    }

    /// A new API key for `partner`; the key itself is returned once, only its hash is kept.
    pub async fn create_key(
        &self,
        partner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        on_write!(self, |c| insert_key(c, partner, now).await)
    }

    /// Revokes one of `partner`'s keys; whether it was there and active.
    pub async fn revoke_key(
        &self,
        partner: Uuid,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Conditional, so one of two concurrent revocations answers `true`.
        let done = on_write!(self, |c| {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND partner_id = $2 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(partner.to_string())
            .bind(to_ms(now))
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }
}
