//! Partners and their API keys.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Store, StoreError, new_id};
use crate::model::{Partner, to_ms};

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

pub(super) fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

pub(super) fn new_key() -> Result<String, StoreError> {
    let mut bytes = [0_u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("fsk_{hex}"))
}

impl Store {
    /// Creates a partner and its first API key.
    pub async fn create_partner(
        &self,
        name: &str,
        direct_enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<CreatedPartner, StoreError> {
        let partner_id = new_id();
        let api_key = new_key()?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO partners (id, name, direct_enabled, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(partner_id.to_string())
        .bind(name)
        .bind(direct_enabled)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO api_keys (id, partner_id, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(new_id().to_string())
            .bind(partner_id.to_string())
            .bind(key_hash(&api_key))
            .bind(&api_key[..12])
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CreatedPartner {
            partner_id,
            api_key,
        })
    }

    /// The partner holding this (unrevoked) key.
    pub async fn partner_by_key(&self, key: &str) -> Result<Option<Partner>, StoreError> {
        let row: Option<(String, String, bool)> = sqlx::query_as(
            "SELECT p.id, p.name, p.direct_enabled FROM api_keys k JOIN partners p ON p.id = k.partner_id
             WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash(key))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.and_then(|(id, name, direct_enabled)| {
            Some(Partner {
                id: Uuid::parse_str(&id).ok()?,
                name,
                direct_enabled,
            })
        }))
    }

    /// A partner by its id.
    pub async fn partner_by_id(&self, id: Uuid) -> Result<Option<Partner>, StoreError> {
        let row: Option<(String, bool)> =
            sqlx::query_as("SELECT name, direct_enabled FROM partners WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|(name, direct_enabled)| Partner {
            id,
            name,
            direct_enabled,
        }))
    }

    /// Whether any partner exists (the demo seeds only an empty database).
    pub async fn has_partners(&self) -> Result<bool, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM partners")
            .fetch_one(&self.read)
            .await?;
        Ok(n > 0)
    }
}
