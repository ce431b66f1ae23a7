//! Users. Every query is scoped to the caller's partner: another partner's user reads
//! exactly like one that does not exist.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError, new_id};
use crate::model::{User, UserSource, from_ms, to_ms};

type UserRow = (String, String, Option<String>, i64);

fn user_from_row((id, source, external_reference, created_at): UserRow) -> Option<User> {
    Some(User {
        user_id: Uuid::parse_str(&id).ok()?,
        source: UserSource::parse(&source),
        external_reference,
        created_at: from_ms(created_at),
    })
}

impl Store {
    /// Creates a user of `partner`.
    pub async fn create_user(
        &self,
        partner: Uuid,
        source: UserSource,
        external_reference: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let user = User {
            user_id: new_id(),
            source,
            external_reference: external_reference.map(str::to_owned),
            created_at: now,
        };
        sqlx::query("INSERT INTO users (id, partner_id, source, external_reference, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(user.user_id.to_string())
            .bind(partner.to_string())
            .bind(source.as_str())
            .bind(external_reference)
            .bind(to_ms(now))
            .execute(&self.write)
            .await?;
        Ok(user)
    }

    /// The user, if it exists and belongs to `partner`.
    pub async fn user(&self, partner: Uuid, user_id: Uuid) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, source, external_reference, created_at FROM users WHERE id = ?1 AND partner_id = ?2",
        )
        .bind(user_id.to_string())
        .bind(partner.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.and_then(user_from_row))
    }

    /// A page of `partner`'s users, newest first, optionally those whose id or external
    /// reference contains `search`.
    pub async fn users(
        &self,
        partner: Uuid,
        search: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = search.map(|s| format!("%{}%", s.replace(['%', '_'], "")));
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, source, external_reference, created_at FROM users
             WHERE partner_id = ?1 AND (?2 IS NULL OR id LIKE ?2 OR external_reference LIKE ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4",
        )
        .bind(partner.to_string())
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().filter_map(user_from_row).collect())
    }
}
