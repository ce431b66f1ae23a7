//! What the portal reads and writes beyond the partner API: sessions of portal users, the
//! users list with its search, per-account transaction counts, the jobs list, a job's
//! events and their webhook deliveries, and API keys. Scoped to the signed-in user's partner.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Store, StoreError, new_id};
use crate::model::{from_ms, to_ms};

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

/// One row of the users list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    /// The user.
    pub user_id: String,
    /// `DIRECT` or `MARKETPLACE`.
    pub source: String,
    /// The partner's reference.
    pub external_reference: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Connected accounts.
    pub accounts: i64,
    /// The newest `lastTransactionRefreshDate` of its accounts.
    pub last_refresh: Option<DateTime<Utc>>,
}

/// One row of the jobs list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    /// The job.
    pub job_id: String,
    /// Whose.
    pub user_id: String,
    /// `ON_DEMAND`, `SCHEDULED`, `INITIAL`.
    pub kind: String,
    /// `QUEUED` ... `FAILED`.
    pub status: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its accounts.
    pub accounts: i64,
    /// Those that ended.
    pub done: i64,
}

/// One account of a job, with its timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobItemRow {
    /// The account.
    pub account_id: String,
    /// `QUEUED`, `RUNNING`, `SUCCEEDED`, `FAILED`.
    pub state: String,
    /// Fetch attempts.
    pub attempts: i64,
    /// When a worker first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// New transactions.
    pub new_transactions: Option<i64>,
    /// Why it failed.
    pub error_code: Option<String>,
}

/// An event of a job, with how its webhook deliveries went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEventRow {
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// Its account.
    pub account_id: String,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// (subscription, status, attempts) of each delivery.
    pub deliveries: Vec<(String, String, i64)>,
}

/// An API key as the portal lists it (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// The key's id.
    pub id: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A webhook outcome of the last 24 h, for the portal's chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptPoint {
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// Its latency.
    pub latency_ms: Option<i64>,
    /// Whether it succeeded.
    pub succeeded: bool,
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Verifying a password costs the same whether or not the email exists: a missing user is
/// checked against this hash, so response times do not reveal which emails are registered.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0dPjr9E6OuEFDTdrb8rX5MKdbexUqlXqiILTmu4ZYXo";

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl Store {
    /// The portal user with this email and password.
    pub async fn authenticate(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, password_hash FROM portal_users WHERE email = ?1")
                .bind(email.trim())
                .fetch_optional(&self.read)
                .await?;
        let (id, hash) = row.map_or((None, DUMMY_HASH.to_owned()), |(id, h)| (Some(id), h));
        let password = password.to_owned();
        // Argon2 takes tens of milliseconds of CPU: off the async threads.
        let ok = tokio::task::spawn_blocking(move || password_matches(&hash, &password))
            .await
            .unwrap_or(false);
        Ok(id.filter(|_| ok).and_then(|id| Uuid::parse_str(&id).ok()))
    }

    /// Opens a session for `user` until `now + ttl`; returns the cookie's token.
    pub async fn create_session(
        &self,
        user: Uuid,
        ttl: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query(
            "INSERT INTO portal_sessions (token_hash, portal_user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(token_hash(&token))
        .bind(user.to_string())
        .bind(to_ms(now))
        .bind(to_ms(now + ttl))
        .execute(&self.write)
        .await?;
        Ok(token)
    }

    /// Who holds this session token, if it is valid at `now`.
    pub async fn session(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionUser>, StoreError> {
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT u.id, u.email, p.id, p.name FROM portal_sessions s
             JOIN portal_users u ON u.id = s.portal_user_id JOIN partners p ON p.id = u.partner_id
             WHERE s.token_hash = ?1 AND s.expires_at > ?2",
        )
        .bind(token_hash(token))
        .bind(to_ms(now))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.and_then(|(user, email, partner, name)| {
            Some(SessionUser {
                portal_user_id: Uuid::parse_str(&user).ok()?,
                email,
                partner_id: Uuid::parse_str(&partner).ok()?,
                partner_name: name,
            })
        }))
    }

    /// Ends a session (and any expired ones).
    pub async fn end_session(&self, token: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM portal_sessions WHERE token_hash = ?1 OR expires_at <= ?2")
            .bind(token_hash(token))
            .bind(to_ms(now))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// A page of `partner`'s users, newest first, whose id or external reference contains
    /// `query`; and whether there is a next page.
    pub async fn users_page(
        &self,
        partner: Uuid,
        query: &str,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<UserRow>, bool), StoreError> {
        let pattern = format!(
            "%{}%",
            query
                .trim()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        type Row = (String, String, Option<String>, i64, i64, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT u.id, u.source, u.external_reference, u.created_at,
               (SELECT COUNT(*) FROM accounts a WHERE a.user_id = u.id),
               (SELECT MAX(a.last_transaction_refresh_date) FROM accounts a WHERE a.user_id = u.id)
             FROM users u
             WHERE u.partner_id = ?1
               AND (u.id LIKE ?2 ESCAPE '\\' OR COALESCE(u.external_reference, '') LIKE ?2 ESCAPE '\\')
             ORDER BY u.created_at DESC, u.id DESC LIMIT ?3 OFFSET ?4",
        )
        .bind(partner.to_string())
        .bind(pattern)
        .bind(i64::from(limit) + 1)
        .bind(i64::from(offset))
        .fetch_all(&self.read)
        .await?;
        let more = rows.len() > limit as usize;
        Ok((
            rows.into_iter()
                .take(limit as usize)
                .map(
                    |(user_id, source, external_reference, created, accounts, last)| UserRow {
                        user_id,
                        source,
                        external_reference,
                        created_at: from_ms(created),
                        accounts,
                        last_refresh: last.map(from_ms),
                    },
                )
                .collect(),
            more,
        ))
    }

    /// Stored transactions per account of one user.
    pub async fn transaction_counts(&self, user: Uuid) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT account_id, COUNT(*) FROM transactions WHERE user_id = ?1 GROUP BY account_id",
        )
        .bind(user.to_string())
        .fetch_all(&self.read)
        .await?)
    }

    /// A page of `partner`'s jobs (optionally one user's), newest first; and whether there is more.
    pub async fn jobs_page(
        &self,
        partner: Uuid,
        user: Option<Uuid>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<JobRow>, bool), StoreError> {
        type Row = (String, String, String, String, i64, Option<i64>, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT j.id, j.user_id, j.kind, j.status, j.created_at, j.finished_at,
               (SELECT COUNT(*) FROM refresh_job_items i WHERE i.job_id = j.id),
               (SELECT COUNT(*) FROM refresh_job_items i WHERE i.job_id = j.id AND i.state IN ('SUCCEEDED', 'FAILED'))
             FROM refresh_jobs j
             WHERE j.partner_id = ?1 AND (?2 IS NULL OR j.user_id = ?2)
             ORDER BY j.created_at DESC, j.id DESC LIMIT ?3 OFFSET ?4",
        )
        .bind(partner.to_string())
        .bind(user.map(|u| u.to_string()))
        .bind(i64::from(limit) + 1)
        .bind(i64::from(offset))
        .fetch_all(&self.read)
        .await?;
        let more = rows.len() > limit as usize;
        Ok((
            rows.into_iter()
                .take(limit as usize)
                .map(
                    |(job_id, user_id, kind, status, created, finished, accounts, done)| JobRow {
                        job_id,
                        user_id,
                        kind,
                        status,
                        created_at: from_ms(created),
                        finished_at: finished.map(from_ms),
                        accounts,
                        done,
                    },
                )
                .collect(),
            more,
        ))
    }

    /// One of `partner`'s jobs with its accounts' timings, its events and their deliveries.
    pub async fn job_detail(
        &self,
        partner: Uuid,
        job: Uuid,
    ) -> Result<Option<(JobRow, Vec<JobItemRow>, Vec<JobEventRow>)>, StoreError> {
        let (rows, _) = {
            type Row = (String, String, String, String, i64, Option<i64>, i64, i64);
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT j.id, j.user_id, j.kind, j.status, j.created_at, j.finished_at,
                   (SELECT COUNT(*) FROM refresh_job_items i WHERE i.job_id = j.id),
                   (SELECT COUNT(*) FROM refresh_job_items i WHERE i.job_id = j.id AND i.state IN ('SUCCEEDED', 'FAILED'))
                 FROM refresh_jobs j WHERE j.partner_id = ?1 AND j.id = ?2",
            )
            .bind(partner.to_string())
            .bind(job.to_string())
            .fetch_all(&self.read)
            .await?;
            (rows, ())
        };
        let Some((job_id, user_id, kind, status, created, finished, accounts, done)) =
            rows.into_iter().next()
        else {
            return Ok(None);
        };
        type ItemRow = (
            String,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let items: Vec<ItemRow> = sqlx::query_as(
            "SELECT account_id, state, attempts, started_at, finished_at, new_transactions, error_code
             FROM refresh_job_items WHERE job_id = ?1 ORDER BY account_id",
        )
        .bind(&job_id)
        .fetch_all(&self.read)
        .await?;
        let events: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, type, json_extract(payload, '$.accountId'), created_at FROM events
             WHERE partner_id = ?1 AND json_extract(payload, '$.jobId') = ?2 ORDER BY seq",
        )
        .bind(partner.to_string())
        .bind(&job_id)
        .fetch_all(&self.read)
        .await?;
        let mut event_rows = Vec::with_capacity(events.len());
        for (event_id, event_type, account_id, created) in events {
            let deliveries: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT subscription_id, status, attempts FROM webhook_deliveries WHERE event_id = ?1 ORDER BY subscription_id",
            )
            .bind(&event_id)
            .fetch_all(&self.read)
            .await?;
            event_rows.push(JobEventRow {
                event_id,
                event_type,
                account_id,
                created_at: from_ms(created),
                deliveries,
            });
        }
        Ok(Some((
            JobRow {
                job_id,
                user_id,
                kind,
                status,
                created_at: from_ms(created),
                finished_at: finished.map(from_ms),
                accounts,
                done,
            },
            items
                .into_iter()
                .map(
                    |(
                        account_id,
                        state,
                        attempts,
                        started,
                        finished,
                        new_transactions,
                        error_code,
                    )| JobItemRow {
                        account_id,
                        state,
                        attempts,
                        started_at: started.map(from_ms),
                        finished_at: finished.map(from_ms),
                        new_transactions,
                        error_code,
                    },
                )
                .collect(),
            event_rows,
        )))
    }

    /// The newest job of a user that is still open.
    pub async fn open_job_of(
        &self,
        partner: Uuid,
        user: Uuid,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM refresh_jobs WHERE partner_id = ?1 AND user_id = ?2 AND status IN ('QUEUED', 'RUNNING')
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(partner.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// `partner`'s API keys, newest first.
    pub async fn api_keys(&self, partner: Uuid) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE partner_id = ?1 ORDER BY created_at DESC, id DESC",
        )
        .bind(partner.to_string())
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, prefix, created, revoked)| ApiKeyRow {
                id,
                prefix,
                created_at: from_ms(created),
                revoked_at: revoked.map(from_ms),
            })
            .collect())
    }

    /// A new API key for `partner`; the key itself is returned once, only its hash is kept.
    pub async fn create_api_key(
        &self,
        partner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let key = super::partners::new_key()?;
        sqlx::query("INSERT INTO api_keys (id, partner_id, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(new_id().to_string())
            .bind(partner.to_string())
            .bind(super::partners::key_hash(&key))
            .bind(&key[..12])
            .bind(to_ms(now))
            .execute(&self.write)
            .await?;
        Ok(key)
    }

    /// Revokes one of `partner`'s keys; whether it was there and active.
    pub async fn revoke_api_key(
        &self,
        partner: Uuid,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND partner_id = ?2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(partner.to_string())
        .bind(to_ms(now))
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The attempts of one subscription since `since`, for the latency chart.
    pub async fn attempt_points(
        &self,
        partner: Uuid,
        subscription: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<AttemptPoint>, StoreError> {
        let rows: Vec<(i64, Option<i64>, String)> = sqlx::query_as(
            "SELECT a.started_at, a.latency_ms, a.outcome FROM webhook_attempts a
             JOIN webhook_subscriptions s ON s.id = a.subscription_id
             WHERE s.partner_id = ?1 AND a.subscription_id = ?2 AND a.started_at >= ?3
             ORDER BY a.started_at LIMIT 5000",
        )
        .bind(partner.to_string())
        .bind(subscription.to_string())
        .bind(to_ms(since))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, latency_ms, outcome)| AttemptPoint {
                at: from_ms(at),
                latency_ms,
                succeeded: outcome == "SUCCEEDED",
            })
            .collect())
    }
}
