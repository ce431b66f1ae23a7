//! Transactions: newest first by `created`, filtered, in cursor pages.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{Store, StoreError};
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

type TxRow = (
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

impl Store {
    /// A page of the user's transactions; `None` when the user is not `partner`'s.
    pub async fn transactions(
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
        let rows: Vec<TxRow> = q.build_query_as().fetch_all(&mut *conn).await?;
        let mut data: Vec<Transaction> = rows
            .into_iter()
            .filter_map(
                |(
                    id,
                    account_id,
                    created,
                    booked_at,
                    amount,
                    currency,
                    description,
                    merchant_name,
                    category,
                )| {
                    Some(Transaction {
                        transaction_id: Uuid::parse_str(&id).ok()?,
                        account_id: Uuid::parse_str(&account_id).ok()?,
                        created: from_ms(created),
                        booked_at: from_ms(booked_at),
                        amount,
                        currency,
                        description,
                        merchant_name,
                        category,
                    })
                },
            )
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

    /// Whether the account belongs to one of `partner`'s users.
    pub async fn account_of_partner(
        &self,
        partner: Uuid,
        account_id: Uuid,
    ) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.id = ?1 AND u.partner_id = ?2",
        )
        .bind(account_id.to_string())
        .bind(partner.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    /// Whether the account is the user's (and the user `partner`'s).
    pub async fn account_belongs(
        &self,
        partner: Uuid,
        user_id: Uuid,
        account_id: Uuid,
    ) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.id = ?1 AND u.id = ?2 AND u.partner_id = ?3",
        )
        .bind(account_id.to_string())
        .bind(user_id.to_string())
        .bind(partner.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }
}
