//! Transactions: written one way (`insert`), listed newest first by `created`, filtered,
//! in cursor pages, and counted per account.
//!
//! The writes ride in a caller's transaction of either backend ([`TxConn`]). SQLite takes
//! the rows as bound values (`INSERT OR IGNORE .. ON CONFLICT`), PostgreSQL as arrays in
//! one `unnest` statement; both count what was new from `RETURNING`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::jobs::{TxConn, TxConnRef};
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
/// transaction so that a quota checked with it holds at commit). On PostgreSQL that takes
/// the partner's row lock (`FOR NO KEY UPDATE`, the lock the counting trigger takes
/// anyway), so that no other transaction adds to the count before this one commits.
pub(super) async fn held_by<C: TxConn + ?Sized>(
    conn: &mut C,
    partner: &str,
) -> Result<i64, StoreError> {
    let held: Option<(i64,)> = match conn.tx_conn() {
        TxConnRef::Sqlite(conn) => {
            sqlx::query_as("SELECT transactions_held FROM partners WHERE id = $1")
                .bind(partner)
                .fetch_optional(conn)
                .await?
        }
        TxConnRef::Postgres(conn) => {
            sqlx::query_as("SELECT transactions_held FROM partners WHERE id = $1 FOR NO KEY UPDATE")
                .bind(partner)
                .fetch_optional(conn)
                .await?
        }
    };
    Ok(held.map_or(0, |(n,)| n))
}

/// [`held_by`] for several partners in one statement, on PostgreSQL: their rows locked in
/// id order (two engine commits locking the same partners cannot deadlock).
pub(super) async fn held_by_many_pg(
    conn: &mut PgConnection,
    partners: &[&str],
) -> Result<HashMap<String, i64>, StoreError> {
    if partners.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, transactions_held FROM partners WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(partners)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
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
pub(super) async fn insert<C: TxConn + ?Sized>(
    conn: &mut C,
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
pub(super) async fn insert_many<C: TxConn + ?Sized>(
    conn: &mut C,
    batches: &[Batch<'_>],
) -> Result<Vec<u64>, StoreError> {
    if batches.iter().all(|b| b.transactions.is_empty()) {
        return Ok(vec![0_u64; batches.len()]);
    }
    match conn.tx_conn() {
        TxConnRef::Sqlite(conn) => insert_many_sqlite(conn, batches).await,
        TxConnRef::Postgres(conn) => insert_many_pg(conn, batches).await,
    }
}

/// SQLite's [`insert_many`]: bound values, `INSERT OR IGNORE` (a bank id the account holds
/// under another match key is skipped) with an upsert on the match key.
async fn insert_many_sqlite(
    conn: &mut SqliteConnection,
    batches: &[Batch<'_>],
) -> Result<Vec<u64>, StoreError> {
    let mut counts = vec![0_u64; batches.len()];
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

/// A transaction row for PostgreSQL's statement, borrowed from its fetch.
#[derive(Clone, Copy)]
struct PgRow<'t> {
    batch: usize,
    bank_id: &'t str,
    booked_at: i64,
    amount: &'t str,
    currency: &'t str,
    description: &'t str,
    merchant_name: Option<&'t str>,
    category: Option<&'t str>,
    pending: bool,
    match_key: &'t str,
}

/// PostgreSQL's [`insert_many`]: every row in one statement, as arrays. An upsert names one
/// conflict target (the match key) and, unlike SQLite's `OR IGNORE`, fails on any other
/// unique key, so what `OR IGNORE` skips is left out first: a bank id the account already
/// holds under another match key (one probe of the unique index per row, `LATERAL ..
/// LIMIT 1`, which the planner cannot turn into a scan of the whole table), and, among the
/// rows themselves, what SQLite would meet as a conflict with a row of the same statement
/// (an upsert may not touch one row twice in PostgreSQL): a later row with a match key
/// already given is merged into the earlier one when it books it, and dropped otherwise; a
/// later row with a bank id already given is dropped. Rows go in the order given (ids,
/// and the counting trigger's partner locks).
async fn insert_many_pg(
    conn: &mut PgConnection,
    batches: &[Batch<'_>],
) -> Result<Vec<u64>, StoreError> {
    let mut counts = vec![0_u64; batches.len()];
    // The rows to write, in order, after SQLite's in-statement conflicts are played out.
    let mut rows: Vec<PgRow<'_>> = Vec::new();
    let mut by_match: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_bank_id: HashMap<(&str, &str), usize> = HashMap::new();
    for (batch, b) in batches.iter().enumerate() {
        for t in b.transactions {
            let row = PgRow {
                batch,
                bank_id: &t.bank_transaction_id,
                booked_at: to_ms(t.booked_at),
                amount: &t.amount,
                currency: &t.currency,
                description: &t.description,
                merchant_name: t.merchant_name.as_deref(),
                category: t.category.as_deref(),
                pending: t.pending,
                match_key: t.reference.as_deref().unwrap_or(&t.bank_transaction_id),
            };
            if let Some(&at) = by_match.get(&(b.account_id, row.match_key)) {
                let taken = by_bank_id.get(&(b.account_id, row.bank_id)).copied();
                if rows[at].pending && !row.pending && taken.is_none_or(|other| other == at) {
                    // Booked in place, as the upsert does: its id, currency and match key stay.
                    let earlier = &mut rows[at];
                    by_bank_id.remove(&(b.account_id, earlier.bank_id));
                    by_bank_id.insert((b.account_id, row.bank_id), at);
                    *earlier = PgRow {
                        currency: earlier.currency,
                        match_key: earlier.match_key,
                        ..row
                    };
                }
                continue;
            }
            if by_bank_id.contains_key(&(b.account_id, row.bank_id)) {
                continue;
            }
            by_match.insert((b.account_id, row.match_key), rows.len());
            by_bank_id.insert((b.account_id, row.bank_id), rows.len());
            rows.push(row);
        }
    }
    let n = rows.len();
    let mut ids: Vec<String> = Vec::with_capacity(n);
    let mut new_ids: HashMap<String, usize> = HashMap::with_capacity(n);
    let (mut accounts, mut users, mut bank_ids, mut created, mut booked) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut amounts, mut currencies, mut descriptions, mut merchants, mut categories) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut statuses, mut match_keys) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for row in &rows {
        let b = &batches[row.batch];
        let id = new_id().to_string();
        new_ids.insert(id.clone(), row.batch);
        ids.push(id);
        accounts.push(b.account_id);
        users.push(b.user_id);
        bank_ids.push(row.bank_id);
        created.push(to_ms(b.created));
        booked.push(row.booked_at);
        amounts.push(row.amount);
        currencies.push(row.currency);
        descriptions.push(row.description);
        merchants.push(row.merchant_name);
        categories.push(row.category);
        statuses.push(if row.pending { "PENDING" } else { "BOOKED" });
        match_keys.push(row.match_key);
    }
    let written: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO transactions (id, account_id, user_id, bank_transaction_id, created,
           booked_at, amount, currency, description, merchant_name, category, status, match_key)
         SELECT r.id, r.account_id, r.user_id, r.bank_transaction_id, r.created, r.booked_at, r.amount,
             r.currency, r.description, r.merchant_name, r.category, r.status, r.match_key
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
           WITH ORDINALITY AS r(id, account_id, user_id, bank_transaction_id, created, booked_at, amount,
             currency, description, merchant_name, category, status, match_key, ord)
         LEFT JOIN LATERAL (SELECT 1 AS taken FROM transactions t WHERE t.account_id = r.account_id
             AND t.bank_transaction_id = r.bank_transaction_id AND t.match_key IS DISTINCT FROM r.match_key
             LIMIT 1) AS other ON true
         WHERE other.taken IS NULL
         ORDER BY r.ord
         ON CONFLICT (account_id, match_key) DO UPDATE SET
           bank_transaction_id = excluded.bank_transaction_id, booked_at = excluded.booked_at,
           amount = excluded.amount, description = excluded.description,
           merchant_name = excluded.merchant_name, category = excluded.category, status = excluded.status
         WHERE transactions.status = 'PENDING' AND excluded.status = 'BOOKED'
         RETURNING id",
    )
    .bind(ids)
    .bind(accounts)
    .bind(users)
    .bind(bank_ids)
    .bind(created)
    .bind(booked)
    .bind(amounts)
    .bind(currencies)
    .bind(descriptions)
    .bind(merchants)
    .bind(categories)
    .bind(statuses)
    .bind(match_keys)
    .fetch_all(conn)
    .await?;
    // The rows that come back with one of our new ids are new; the others were updated.
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
        // The same SQL on both backends: `(created, id) < (..)` compares rows alike, and
        // neither column is ever NULL, so the order is the same too.
        let rows: Vec<TransactionRow> = on_read!(self, |c| {
            let mut conn = c.acquire().await?;
            if !super::users::owned_by(&mut *conn, partner, user_id).await? {
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
            q.build_query_as().fetch_all(&mut *conn).await?
        });
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
        Ok(on_read!(self, |c| {
            sqlx::query_as(
                "SELECT account_id, COUNT(*) FROM transactions WHERE user_id = $1 GROUP BY account_id",
            )
            .bind(user.to_string())
            .fetch_all(c)
            .await?
        }))
    }
}
