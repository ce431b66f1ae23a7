//! Which banks this server can fetch from, and the connector for each: the workers ask the
//! directory, the directory asks the account's bank. The sandbox bank is one entry like
//! any other (id `sandbox`) when the server runs with `--sandbox`; banks registered with
//! `freshet bank add` are listed from the database, and fetch once their connector
//! (OAuth tokens, the connection journey) exists.
//!
//! Every call to a bank passes its [`Gate`]: the bank's limits, its `429` pause and its
//! circuit breaker hold for the whole server, and one bank's trouble stays its own.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::gate::{BankLimits, Gate, GateState};
use super::{Bank, BankAccount, BankError, FetchedTransaction};

/// The id of the sandbox bank.
pub const SANDBOX: &str = "sandbox";

/// One bank the directory knows.
#[derive(Clone)]
struct Entry {
    name: String,
    connector: Option<Arc<dyn Bank>>,
    gate: Arc<Gate>,
}

/// The banks of this server.
#[derive(Clone, Default)]
pub struct Directory {
    banks: Arc<RwLock<BTreeMap<String, Entry>>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.listed().iter().map(|(id, _)| id))
            .finish()
    }
}

impl Directory {
    /// Adds (or replaces) bank `id`, fetched through `connector` when there is one, within
    /// `limits`.
    pub fn register(
        &self,
        id: &str,
        name: &str,
        connector: Option<Arc<dyn Bank>>,
        limits: BankLimits,
    ) {
        if let Ok(mut banks) = self.banks.write() {
            banks.insert(
                id.to_owned(),
                Entry {
                    name: name.to_owned(),
                    connector,
                    gate: Gate::new(limits),
                },
            );
        }
    }

    /// Where bank `id`'s gate stands (breaker, pause), if the directory knows the bank.
    pub fn gate_state(&self, id: &str) -> Option<GateState> {
        Some(self.banks.read().ok()?.get(id)?.gate.state())
    }

    /// Every bank: (id, name), by id.
    pub fn listed(&self) -> Vec<(String, String)> {
        self.banks.read().map_or_else(
            |_| Vec::new(),
            |banks| {
                banks
                    .iter()
                    .map(|(id, e)| (id.clone(), e.name.clone()))
                    .collect()
            },
        )
    }

    fn connector(&self, id: &str) -> Result<(Arc<dyn Bank>, Arc<Gate>), BankError> {
        let banks = self
            .banks
            .read()
            .map_err(|_| BankError::Internal("the bank directory is poisoned".to_owned()))?;
        match banks.get(id) {
            Some(Entry {
                connector: Some(c),
                gate,
                ..
            }) => Ok((Arc::clone(c), Arc::clone(gate))),
            Some(_) => Err(BankError::Internal(format!(
                "bank {id} is registered but this server has no connector for it yet"
            ))),
            None => Err(BankError::Internal(format!("no bank {id} on this server"))),
        }
    }
}

#[async_trait::async_trait]
impl Bank for Directory {
    async fn transactions(
        &self,
        account: &BankAccount,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        let (bank, gate) = self.connector(&account.bank_id)?;
        gate.call(bank.transactions(account, since)).await
    }

    async fn balance(&self, account: &BankAccount) -> Result<Option<String>, BankError> {
        let (bank, gate) = self.connector(&account.bank_id)?;
        gate.call(bank.balance(account)).await
    }

    fn crowded(&self) -> Vec<String> {
        self.banks.read().map_or_else(
            |_| Vec::new(),
            |banks| {
                banks
                    .iter()
                    .filter(|(_, e)| e.gate.crowded())
                    .map(|(id, _)| id.clone())
                    .collect()
            },
        )
    }
}

impl Directory {
    /// The accounts consent `consent_id` at bank `bank_id` covers.
    pub async fn accounts(
        &self,
        bank_id: &str,
        consent_id: &str,
    ) -> Result<Vec<super::AccountInfo>, BankError> {
        let (bank, gate) = self.connector(bank_id)?;
        gate.call(bank.accounts(consent_id)).await
    }

    /// The name of bank `id`, if the directory knows it.
    pub fn name_of(&self, id: &str) -> Option<String> {
        self.banks.read().ok()?.get(id).map(|e| e.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BankLimits = BankLimits {
        max_in_flight: 4,
        requests_per_second: f64::INFINITY,
    };

    struct Fixed(&'static str);

    #[async_trait::async_trait]
    impl Bank for Fixed {
        async fn transactions(
            &self,
            _: &BankAccount,
            _: Option<DateTime<Utc>>,
        ) -> Result<Vec<FetchedTransaction>, BankError> {
            Err(BankError::Internal(self.0.to_owned()))
        }
    }

    fn account(bank: &str) -> BankAccount {
        BankAccount {
            bank_id: bank.to_owned(),
            consent_id: "c".to_owned(),
            account_id: "a".to_owned(),
        }
    }

    #[tokio::test]
    async fn each_account_is_fetched_from_its_own_bank() {
        let directory = Directory::default();
        directory.register("one", "Bank One", Some(Arc::new(Fixed("one"))), LIMITS);
        directory.register("two", "Bank Two", Some(Arc::new(Fixed("two"))), LIMITS);
        directory.register("three", "Bank Three", None, LIMITS);
        for bank in ["one", "two"] {
            assert_eq!(
                directory.transactions(&account(bank), None).await,
                Err(BankError::Internal(bank.to_owned()))
            );
        }
        for bank in ["three", "four"] {
            let refused = directory.transactions(&account(bank), None).await;
            assert!(
                matches!(&refused, Err(BankError::Internal(why)) if why.contains(bank)),
                "{refused:?}"
            );
        }
        assert_eq!(
            directory.listed(),
            [
                ("one", "Bank One"),
                ("three", "Bank Three"),
                ("two", "Bank Two")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }
}
