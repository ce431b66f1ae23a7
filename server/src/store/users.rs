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

/// Whether `user_id` exists and is `partner`'s; every per-user query asks this first, so
/// that another partner's user reads exactly like a missing one.
pub(super) async fn owned_by(
    conn: &mut sqlx::SqliteConnection,
    partner: Uuid,
    user_id: Uuid,
) -> Result<bool, StoreError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM users WHERE id = ?1 AND partner_id = ?2")
            .bind(user_id.to_string())
            .bind(partner.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.is_some())
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
}
