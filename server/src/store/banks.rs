//! The bank registry: one row per bank, written by `freshet bank add` (and by a sandbox
//! server for its own bank), read by the workers' connectors and `GET /v1/banks`. The
//! client secret arrives and leaves sealed: this module never sees it in clear.

use chrono::{DateTime, Utc};

use super::{Banks, Db, StoreError};
use crate::model::{from_ms, to_ms};

/// A bank as registered. `client_secret` is the sealed text, never the secret.
#[derive(Clone, PartialEq)]
pub struct BankRecord {
    /// The bank's id in freshet (`sandbox`, `acme-bank`, ...): what accounts name.
    pub id: String,
    /// Its name, as partners and end users see it.
    pub name: String,
    /// The base URL of its AIS API (`…/open-banking/v3.1/aisp`).
    pub api_base: String,
    /// The OpenID issuer, when the endpoints came from its discovery document.
    pub issuer: Option<String>,
    /// Its OAuth authorization endpoint (the end user's browser goes there).
    pub authorization_url: String,
    /// Its OAuth token endpoint.
    pub token_url: String,
    /// freshet's client id at the bank.
    pub client_id: String,
    /// freshet's client secret at the bank, sealed (`secrets.rs`).
    pub client_secret: String,
    /// The PEM of a private CA its TLS certificates chain to, if any.
    pub ca_pem: Option<String>,
    /// Requests in flight to it at once, across the server.
    pub max_in_flight: u32,
    /// Requests a second to it, across the server.
    pub requests_per_second: f64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When its registration last changed.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for BankRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("api_base", &self.api_base)
            .field("client_id", &self.client_id)
            .field("client_secret", &"sealed")
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct BankRow {
    id: String,
    name: String,
    api_base: String,
    issuer: Option<String>,
    authorization_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    ca_pem: Option<String>,
    max_in_flight: i64,
    requests_per_second: f64,
    created_at: i64,
    updated_at: i64,
}

impl From<BankRow> for BankRecord {
    fn from(row: BankRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            api_base: row.api_base,
            issuer: row.issuer,
            authorization_url: row.authorization_url,
            token_url: row.token_url,
            client_id: row.client_id,
            client_secret: row.client_secret,
            ca_pem: row.ca_pem,
            max_in_flight: u32::try_from(row.max_in_flight).unwrap_or(1),
            requests_per_second: row.requests_per_second,
            created_at: from_ms(row.created_at),
            updated_at: from_ms(row.updated_at),
        }
    }
}

const COLUMNS: &str =
    "id, name, api_base, issuer, authorization_url, token_url, client_id, client_secret,
   ca_pem, max_in_flight, requests_per_second, created_at, updated_at";

impl Banks<'_> {
    /// Registers `bank`, or updates the registration of the bank with its id (keeping when
    /// it was first registered). Returns whether it was new.
    pub async fn upsert(&self, bank: &BankRecord) -> Result<bool, StoreError> {
        // The look and the upsert see no writer between them (SQLite's one writer; the serial
        // lock on PostgreSQL), so "new" is told to exactly one of two concurrent registrations.
        in_tx!(self, |tx| {
            let existed: Option<(i64,)> =
                sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM banks WHERE id = $1")
                    .bind(&bank.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query(
            "INSERT INTO banks (id, name, api_base, issuer, authorization_url, token_url, client_id, client_secret,
               ca_pem, max_in_flight, requests_per_second, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, api_base = excluded.api_base,
               issuer = excluded.issuer, authorization_url = excluded.authorization_url,
               token_url = excluded.token_url, client_id = excluded.client_id,
               client_secret = excluded.client_secret, ca_pem = excluded.ca_pem,
               max_in_flight = excluded.max_in_flight, requests_per_second = excluded.requests_per_second,
               updated_at = excluded.updated_at",
        )
        .bind(&bank.id)
        .bind(&bank.name)
        .bind(&bank.api_base)
        .bind(&bank.issuer)
        .bind(&bank.authorization_url)
        .bind(&bank.token_url)
        .bind(&bank.client_id)
        .bind(&bank.client_secret)
        .bind(&bank.ca_pem)
        .bind(i64::from(bank.max_in_flight))
        .bind(bank.requests_per_second)
        .bind(to_ms(bank.updated_at))
        .execute(&mut *tx)
        .await?;
            tx.commit().await?;
            Ok(existed.is_none())
        })
    }

    /// Every registered bank, by id.
    pub async fn list(&self) -> Result<Vec<BankRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM banks ORDER BY id");
        let rows: Vec<BankRow> = on_read!(self, |c| sqlx::query_as(&sql).fetch_all(c).await?);
        Ok(rows.into_iter().map(BankRecord::from).collect())
    }

    /// One bank.
    pub async fn get(&self, id: &str) -> Result<Option<BankRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM banks WHERE id = $1");
        let row: Option<BankRow> = on_read!(self, |c| {
            sqlx::query_as(&sql).bind(id).fetch_optional(c).await?
        });
        Ok(row.map(BankRecord::from))
    }

    /// Every bank's id and sealed client secret.
    pub async fn sealed_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_read!(self, |c| {
            sqlx::query_as("SELECT id, client_secret FROM banks ORDER BY id")
                .fetch_all(c)
                .await?
        }))
    }

    /// Replaces sealed secrets — (bank id, the sealed text read, the new one) — in one
    /// transaction; a secret changed meanwhile is left as it is. Returns how many changed.
    pub async fn replace_secrets(
        &self,
        secrets: &[(String, String, String)],
    ) -> Result<u64, StoreError> {
        // Each update re-checks the secret it replaces; the transaction makes them all or none.
        in_tx!(self, |tx| {
            let mut changed = 0;
            for (id, old, new) in secrets {
                changed += sqlx::query(
                    "UPDATE banks SET client_secret = $3 WHERE id = $1 AND client_secret = $2",
                )
                .bind(id)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// Per bank, how its fetches ended since `since`: succeeded, and failed on the bank's
    /// side (unavailable, timed out, rate-limiting; not a revoked consent or our own error).
    pub async fn recent_answers(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<BankAnswers>, StoreError> {
        // PostgreSQL sums no booleans: it counts with FILTER (a bigint, as the row wants).
        let rows: Vec<BankAnswers> = match &self.db {
            Db::Sqlite { read, .. } => {
                sqlx::query_as(
                    "SELECT a.bank_id,
               SUM(i.state = 'SUCCEEDED') AS succeeded,
               SUM(i.state = 'FAILED' AND i.error_code IN ('BANK_UNAVAILABLE', 'BANK_TIMEOUT', 'BANK_RATE_LIMITED')) AS failed
             FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id
             WHERE i.finished_at >= $1 GROUP BY a.bank_id",
                )
                .bind(to_ms(since))
                .fetch_all(read)
                .await?
            }
            Db::Postgres { pool } => {
                sqlx::query_as(
                    "SELECT a.bank_id,
               COUNT(*) FILTER (WHERE i.state = 'SUCCEEDED') AS succeeded,
               COUNT(*) FILTER (WHERE i.state = 'FAILED' AND i.error_code IN ('BANK_UNAVAILABLE', 'BANK_TIMEOUT', 'BANK_RATE_LIMITED')) AS failed
             FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id
             WHERE i.finished_at >= $1 GROUP BY a.bank_id",
                )
                .bind(to_ms(since))
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows)
    }
}

/// How one bank's recent fetches ended.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BankAnswers {
    /// The bank.
    pub bank_id: String,
    /// Fetches that succeeded.
    pub succeeded: i64,
    /// Fetches that failed on the bank's side.
    pub failed: i64,
}
