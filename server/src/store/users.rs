//! Users. Every query is scoped to the caller's partner: another partner's user reads
//! exactly like one that does not exist.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{StoreError, Users, new_id, page_of};
use crate::model::{User, UserSource, from_ms, to_ms};

/// One user of a partner's users list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    /// The user.
    pub user: User,
    /// Connected accounts.
    pub accounts: i64,
    /// The newest `lastTransactionRefreshDate` of its accounts.
    pub last_refresh: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    source: String,
    external_reference: Option<String>,
    created_at: i64,
}

impl UserRow {
    fn into_user(self) -> Option<User> {
        Some(User {
            user_id: Uuid::parse_str(&self.id).ok()?,
            source: UserSource::parse(&self.source),
            external_reference: self.external_reference,
            created_at: from_ms(self.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct UserSummaryRow {
    #[sqlx(flatten)]
    user: UserRow,
    accounts: i64,
    last_refresh: Option<i64>,
}

/// Whether `user_id` exists and is `partner`'s; every per-user query asks this first, so
/// that another partner's user reads exactly like a missing one.
pub(super) async fn owned_by(
    conn: impl Into<super::Conn<'_>>,
    partner: Uuid,
    user_id: Uuid,
) -> Result<bool, StoreError> {
    let row: Option<(String,)> = on_conn!(conn.into(), |c| {
        sqlx::query_as("SELECT id FROM users WHERE id = $1 AND partner_id = $2")
            .bind(user_id.to_string())
            .bind(partner.to_string())
            .fetch_optional(c)
            .await?
    });
    Ok(row.is_some())
}

impl Users<'_> {
    /// A new user of `partner`, unless it holds `cap` users already (then `None`).
    pub async fn create(
        &self,
        partner: Uuid,
        source: UserSource,
        external_reference: Option<&str>,
        now: DateTime<Utc>,
        cap: Option<u32>,
    ) -> Result<Option<User>, StoreError> {
        let user = User {
            user_id: new_id(),
            source,
            external_reference: external_reference.map(str::to_owned),
            created_at: now,
        };
        // The count and the insert are one statement: concurrent creations cannot pass the
        // cap together.
        // (Under the serial lock on PostgreSQL: under read committed, two creations could
        // each count the other's user out.)
        let inserted = in_tx!(self, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO users (id, partner_id, source, external_reference, created_at)
                 SELECT $1, $2, $3, $4, $5
                 WHERE $6 IS NULL OR (SELECT COUNT(*) FROM users WHERE partner_id = $2) < $6",
            )
            .bind(user.user_id.to_string())
            .bind(partner.to_string())
            .bind(source.as_str())
            .bind(external_reference)
            .bind(to_ms(now))
            .bind(cap.map(i64::from))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            inserted
        });
        Ok((inserted == 1).then_some(user))
    }

    /// The user, if it exists and belongs to `partner`.
    pub async fn get(&self, partner: Uuid, user_id: Uuid) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT id, source, external_reference, created_at FROM users WHERE id = $1 AND partner_id = $2",
            )
            .bind(user_id.to_string())
            .bind(partner.to_string())
            .fetch_optional(c)
            .await?
        });
        Ok(row.and_then(UserRow::into_user))
    }

    /// A page of `partner`'s users, newest first, whose id or external reference contains
    /// `query`; and whether there is a next page.
    pub async fn page(
        &self,
        partner: Uuid,
        query: &str,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<UserSummary>, bool), StoreError> {
        let pattern = format!(
            "%{}%",
            query
                .trim()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE is the same search.
        let like = match self.backend() {
            super::Backend::Sqlite => "LIKE",
            super::Backend::Postgres => "ILIKE",
        };
        let sql = format!(
            "SELECT u.id, u.source, u.external_reference, u.created_at,
               (SELECT COUNT(*) FROM accounts a WHERE a.user_id = u.id) AS accounts,
               (SELECT MAX(a.last_transaction_refresh_date) FROM accounts a WHERE a.user_id = u.id) AS last_refresh
             FROM users u
             WHERE u.partner_id = $1
               AND (u.id {like} $2 ESCAPE '\\' OR COALESCE(u.external_reference, '') {like} $2 ESCAPE '\\')
             ORDER BY u.created_at DESC, u.id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<UserSummaryRow> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(partner.to_string())
                .bind(&pattern)
                .bind(i64::from(limit) + 1)
                .bind(i64::from(offset))
                .fetch_all(c)
                .await?
        });
        Ok(page_of(rows, limit, |r| {
            Some(UserSummary {
                user: r.user.into_user()?,
                accounts: r.accounts,
                last_refresh: r.last_refresh.map(from_ms),
            })
        }))
    }
}
