//! Transactions: written one way (`insert`), listed newest first by `created`, filtered,
//! in cursor pages, and counted per account.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::{StoreError, Transactions, json, new_id};
use crate::bank::FetchedTransaction;
use crate::model::{Transaction, from_ms, to_ms};

/// Which transactions of a user to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    /// Only these accounts (empty: all of the user's).
    pub account_ids: Vec<Uuid>,
    /// Created at or after.
    pub date_from: Option<DateTime<Utc>>,
    /// Created at or before.
    pub date_to: Option<DateTime<Utc>>,
    /// Continue after this position (`created`, `transactionId`) of an earlier page.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Page size.
    pub limit: u32,
}

/// One page and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionPage {
    /// The transactions, newest first.
    pub data: Vec<Transaction>,
    /// Position of the last one, when more follow.
    pub next: Option<(DateTime<Utc>, Uuid)>,
}

#[derive(sqlx::FromRow)]
struct TransactionRow {
    id: String,
    account_id: String,
    created: i64,
    booked_at: i64,
    amount: String,
    currency: String,
    description: String,
    merchant_name: Option<String>,
    category: Option<String>,
}

impl TransactionRow {
    fn into_transaction(self) -> Option<Transaction> {
        Some(Transaction {
            transaction_id: Uuid::parse_str(&self.id).ok()?,
            account_id: Uuid::parse_str(&self.account_id).ok()?,
            created: from_ms(self.created),
            booked_at: from_ms(self.booked_at),
            amount: self.amount,
            currency: self.currency,
            description: self.description,
            merchant_name: self.merchant_name,
            category: self.category,
        })
    }
}

/// Stores an account's transactions as ingested at `created`, in the order given (ids are
/// time-ordered, so give them oldest first), skipping those whose bank id the account
/// already has; returns how many were new. One statement, whatever their number: the one
/// way a transaction is written.
/// How many transactions `partner`'s users hold (kept by triggers, read in the caller's
/// transaction so that a quota checked with it holds at commit).
pub(super) async fn held_by(conn: &mut SqliteConnection, partner: &str) -> Result<i64, StoreError> {
    let held: Option<(i64,)> =
        sqlx::query_as("SELECT transactions_held FROM partners WHERE id = ?1")
            .bind(partner)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(held.map_or(0, |(n,)| n))
}

pub(super) async fn insert(
    conn: &mut SqliteConnection,
    account_id: &str,
    user_id: &str,
    transactions: &[FetchedTransaction],
    created: DateTime<Utc>,
) -> Result<u64, StoreError> {
    if transactions.is_empty() {
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = transactions
        .iter()
        .map(|t| {
            serde_json::json!([
                new_id().to_string(),
                t.bank_transaction_id,
                to_ms(t.booked_at),
                t.amount,
                t.currency,
                t.description,
                t.merchant_name,
                t.category
            ])
        })
        .collect();
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO transactions (id, account_id, user_id, bank_transaction_id, created, booked_at,
           amount, currency, description, merchant_name, category)
         SELECT value ->> 0, ?2, ?3, value ->> 1, ?4, value ->> 2, value ->> 3, value ->> 4,
           value ->> 5, value ->> 6, value ->> 7
         FROM json_each(?1)",
    )
    .bind(json(&rows)?)
    .bind(account_id)
    .bind(user_id)
    .bind(to_ms(created))
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected())
}

impl Transactions<'_> {
    /// A page of the user's transactions; `None` when the user is not `partner`'s.
    pub async fn page(
        &self,
        partner: Uuid,
        user_id: Uuid,
        filter: &TransactionFilter,
    ) -> Result<Option<TransactionPage>, StoreError> {
        let mut conn = self.read.acquire().await?;
        if !super::users::owned_by(&mut conn, partner, user_id).await? {
            return Ok(None);
        }
        let mut q = QueryBuilder::new(
            "SELECT id, account_id, created, booked_at, amount, currency, description, merchant_name, category
             FROM transactions WHERE user_id = ",
        );
        q.push_bind(user_id.to_string());
        if !filter.account_ids.is_empty() {
            q.push(" AND account_id IN (");
            let mut ids = q.separated(", ");
            for id in &filter.account_ids {
                ids.push_bind(id.to_string());
            }
            q.push(")");
        }
        if let Some(from) = filter.date_from {
            q.push(" AND created >= ").push_bind(to_ms(from));
        }
        if let Some(to) = filter.date_to {
            q.push(" AND created <= ").push_bind(to_ms(to));
        }
        if let Some((created, id)) = filter.after {
            q.push(" AND (created, id) < (")
                .push_bind(to_ms(created))
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows: Vec<TransactionRow> = q.build_query_as().fetch_all(&mut *conn).await?;
        let mut data: Vec<Transaction> = rows
            .into_iter()
            .filter_map(TransactionRow::into_transaction)
            .collect();
        let more = data.len() > filter.limit as usize;
        data.truncate(filter.limit as usize);
        let next = if more {
            data.last().map(|t| (t.created, t.transaction_id))
        } else {
            None
        };
        Ok(Some(TransactionPage { data, next }))
    }

    /// Stored transactions per account of one user.
    pub async fn counts(&self, user: Uuid) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT account_id, COUNT(*) FROM transactions WHERE user_id = ?1 GROUP BY account_id",
        )
        .bind(user.to_string())
        .fetch_all(&self.read)
        .await?)
    }
}
