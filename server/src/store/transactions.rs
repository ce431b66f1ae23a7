//! Transactions: written one way (`insert`), listed newest first by `created`, filtered,
//! in cursor pages, and counted per account.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::{StoreError, Transactions, new_id};
use crate::bank::FetchedTransaction;
use crate::model::{Transaction, TransactionStatus, from_ms, to_ms};

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
    status: String,
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
            status: if self.status == "PENDING" {
                TransactionStatus::Pending
            } else {
                TransactionStatus::Booked
            },
        })
    }
}

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

/// One account's fetched transactions, to store as ingested at `created`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Batch<'a> {
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub transactions: &'a [FetchedTransaction],
    pub created: DateTime<Utc>,
}

/// Stores an account's transactions as ingested at `created`, in the order given (ids are
/// time-ordered, so give them oldest first); see [`insert_many`]. Returns how many were new.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    account_id: &str,
    user_id: &str,
    transactions: &[FetchedTransaction],
    created: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let counts = insert_many(
        conn,
        &[Batch {
            account_id,
            user_id,
            transactions,
            created,
        }],
    )
    .await?;
    Ok(counts.first().copied().unwrap_or(0))
}

/// Stores the transactions of several accounts: a transaction an account already has (by
/// the bank's reference, else its id) is left as it is — unless it was pending and is now
/// booked, then it is updated in place (one transaction, even under a new bank id). Returns
/// how many were new, per batch. One statement, whatever their number: the one way a
/// transaction is written.
pub(super) async fn insert_many(
    conn: &mut SqliteConnection,
    batches: &[Batch<'_>],
) -> Result<Vec<u64>, StoreError> {
    let mut counts = vec![0_u64; batches.len()];
    if batches.iter().all(|b| b.transactions.is_empty()) {
        return Ok(counts);
    }
    // Our new id → the batch it belongs to.
    let mut new_ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut rows: Vec<(String, usize, &FetchedTransaction)> = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        for t in b.transactions {
            let id = new_id().to_string();
            new_ids.insert(id.clone(), i);
            rows.push((id, i, t));
        }
    }
    // Bound values, not JSON: SQLite parses nothing. Chunks keep each statement under
    // SQLite's 32,766 variables (13 a row).
    let mut written: Vec<(String,)> = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(2_000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT OR IGNORE INTO transactions (id, account_id, user_id, bank_transaction_id, created,
               booked_at, amount, currency, description, merchant_name, category, status, match_key) ",
        );
        insert.push_values(chunk, |mut row, (id, i, t)| {
            let b = &batches[*i];
            row.push_bind(id.as_str())
                .push_bind(b.account_id)
                .push_bind(b.user_id)
                .push_bind(t.bank_transaction_id.as_str())
                .push_bind(to_ms(b.created))
                .push_bind(to_ms(t.booked_at))
                .push_bind(t.amount.as_str())
                .push_bind(t.currency.as_str())
                .push_bind(t.description.as_str())
                .push_bind(t.merchant_name.as_deref())
                .push_bind(t.category.as_deref())
                .push_bind(if t.pending { "PENDING" } else { "BOOKED" })
                .push_bind(t.reference.as_deref().unwrap_or(&t.bank_transaction_id));
        });
        insert.push(
            " ON CONFLICT (account_id, match_key) DO UPDATE SET
               bank_transaction_id = excluded.bank_transaction_id, booked_at = excluded.booked_at,
               amount = excluded.amount, description = excluded.description,
               merchant_name = excluded.merchant_name, category = excluded.category, status = excluded.status
             WHERE transactions.status = 'PENDING' AND excluded.status = 'BOOKED'
             RETURNING id",
        );
        // The rows that come back with one of our new ids are new; the others were updated.
        written.extend(
            insert
                .build_query_as::<(String,)>()
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    for (id,) in &written {
        if let Some(&i) = new_ids.get(id) {
            counts[i] += 1;
        }
    }
    Ok(counts)
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
            "SELECT id, account_id, created, booked_at, amount, currency, description, merchant_name, category, status
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
