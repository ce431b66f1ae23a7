//! The sandbox (servers started with `--sandbox`): users of any source, accounts connected in
//! chosen states (presets for the demo and the portal), the sandbox bank's faults and the
//! server's clock. Personas — what kind of transactions an account's bank makes up — exist
//! only here and in the sandbox bank: an account reaches the core as a bank link.

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::ConsentStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Error, Limit, Services};
use crate::bank::FetchedTransaction;
use crate::bank::sandbox::{Fault, FaultKind, FaultScope, PERSONAS, consent_id, history};
use crate::model::{Account, Partner, User, UserSource, new_id};
use crate::store::{AccountAtBank, ConnectQuota, Connected, NewAccount, StoreError};

/// The most accounts one request connects.
const MAX_ACCOUNTS: usize = 50;
/// The longest latency a fault may add.
/// The furthest a partner's clock may be from real time: ten years of 365 days.
pub const MAX_CLOCK_OFFSET_SECONDS: i64 = 3650 * 86_400;
/// A fault's longest latency, in milliseconds (ten minutes).
pub const MAX_FAULT_LATENCY_MS: u64 = 600_000;
/// A fault's longest `Retry-After`, in seconds (a day).
pub const MAX_FAULT_RETRY_AFTER_SECONDS: u64 = 86_400;
const PROVIDERS: &[&str] = &["Monzo", "Starling", "Barclays", "HSBC", "Lloyds", "NatWest"];

/// An account to connect, every field optional (the API's `POST
/// /sandbox/v1/users/{userId}/accounts` items, read as they are).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountSpec {
    #[schema(value_type = Option<crate::model::ConsentStatusDoc>)]
    consent_status: Option<ConsentStatus>,
    consent_expires_at: Option<DateTime<Utc>>,
    last_transaction_refresh_date: Option<DateTime<Utc>>,
    provider_name: Option<String>,
    account_type: Option<String>,
    currency: Option<String>,
    balance: Option<String>,
    persona: Option<String>,
    transaction_count: Option<u32>,
}

/// A partner's fault of the sandbox bank.
#[derive(Clone, Debug, Default)]
pub struct FaultSpec {
    /// One of the partner's accounts; absent: every account of the partner.
    pub account_id: Option<Uuid>,
    /// Added latency, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Its spread, in percent (± up to this share of it).
    pub jitter_percent: Option<u8>,
    /// How to fail; absent: answer normally (after the latency).
    pub kind: Option<FaultKind>,
    /// `Retry-After` for `RATE_LIMITED`, in seconds.
    pub retry_after_seconds: Option<u64>,
}

/// The sandbox clock.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockState {
    /// The server's now.
    #[serde(serialize_with = "crate::model::ts")]
    #[schema(value_type = String)]
    pub now: DateTime<Utc>,
    /// Its offset from real time.
    pub offset_seconds: i64,
}

/// The states a preset user's accounts are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Refreshed two hours ago: a refresh triggers every account.
    Stale,
    /// Refreshed minutes ago: rate-limited.
    Fresh,
    /// No valid consent.
    Expired,
    /// Expired, fresh and never refreshed.
    Mixed,
    /// No account.
    None,
}

impl Preset {
    /// The preset named `name` (`stale`, `fresh`, ...); an unknown name is `None`.
    pub fn named(name: &str) -> Self {
        match name {
            "stale" => Self::Stale,
            "fresh" => Self::Fresh,
            "expired" => Self::Expired,
            "mixed" => Self::Mixed,
            _ => Self::None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Fresh => "fresh",
            Self::Expired => "expired",
            Self::Mixed => "mixed",
            Self::None => "none",
        }
    }

    /// The accounts of a user in this state at `now`.
    pub fn accounts(self, now: DateTime<Utc>) -> Vec<AccountSpec> {
        let ago = |minutes: i64| Some(now - TimeDelta::minutes(minutes));
        let account =
            |provider: &str, kind: &str, consent, last: Option<DateTime<Utc>>| AccountSpec {
                provider_name: Some(provider.to_owned()),
                account_type: Some(kind.to_owned()),
                consent_status: Some(consent),
                last_transaction_refresh_date: last,
                transaction_count: last.map(|_| 30),
                ..AccountSpec::default()
            };
        use ConsentStatus::{Active, Expired};
        match self {
            Self::Stale => vec![
                account("Monzo", "CURRENT", Active, ago(125)),
                account("Starling", "SAVINGS", Active, ago(5)),
            ],
            Self::Fresh => vec![
                account("Barclays", "CURRENT", Active, ago(3)),
                account("HSBC", "CREDIT_CARD", Active, ago(8)),
            ],
            Self::Expired => vec![account("Lloyds", "CURRENT", Expired, ago(3000))],
            Self::Mixed => vec![
                account("NatWest", "CURRENT", Expired, ago(600)),
                account("Monzo", "SAVINGS", Active, ago(2)),
                account("Starling", "CURRENT", Active, None),
            ],
            Self::None => Vec::new(),
        }
    }

    /// A marketplace user's account, refreshed five hours ago.
    pub fn marketplace_account(now: DateTime<Utc>) -> AccountSpec {
        AccountSpec {
            provider_name: Some("Barclays".to_owned()),
            consent_status: Some(ConsentStatus::Active),
            last_transaction_refresh_date: Some(now - TimeDelta::minutes(300)),
            transaction_count: Some(30),
            ..AccountSpec::default()
        }
    }
}

/// The account to store for `spec`, the `i`th of a request for `partner`: its persona's
/// history (seeded by `seed`) and the sandbox bank's link.
fn new_account(
    i: usize,
    spec: AccountSpec,
    partner: Uuid,
    seed: u64,
    max_transactions: u32,
) -> Result<NewAccount, Error> {
    let persona = spec.persona.unwrap_or_else(|| "salaried".to_owned());
    if !PERSONAS.contains(&persona.as_str()) {
        return Err(Error::Invalid(format!(
            "accounts[{i}].persona must be one of {PERSONAS:?}"
        )));
    }
    let count = spec.transaction_count.unwrap_or(0);
    if count > max_transactions {
        return Err(Limit::Sandbox.reached(format!(
            "accounts[{i}].transactionCount must be at most {max_transactions}"
        )));
    }
    let currency = spec.currency.unwrap_or_else(|| "GBP".to_owned());
    let history = match spec.last_transaction_refresh_date {
        Some(at) => history(&persona, seed, count as usize, at),
        None if count > 0 => {
            return Err(Error::Inconsistent(format!(
                "accounts[{i}].transactionCount needs lastTransactionRefreshDate (transactions exist once ingested)"
            )));
        }
        None => Vec::new(),
    };
    let account_id = new_id();
    Ok(NewAccount {
        account_id,
        provider_name: spec
            .provider_name
            .unwrap_or_else(|| PROVIDERS[i % PROVIDERS.len()].to_owned()),
        account_type: spec.account_type.unwrap_or_else(|| "CURRENT".to_owned()),
        balance: spec.balance.unwrap_or_else(|| "1250.00".to_owned()),
        consent_status: spec.consent_status.unwrap_or(ConsentStatus::Active),
        consent_expires_at: spec.consent_expires_at,
        last_transaction_refresh_date: spec.last_transaction_refresh_date,
        bank: AccountAtBank {
            bank_id: "sandbox".to_owned(),
            account_id: account_id.to_string(),
            consent_id: consent_id(&persona, &partner.to_string(), &account_id.to_string()),
        },
        history: history
            .into_iter()
            .map(|t| FetchedTransaction {
                bank_transaction_id: t.bank_transaction_id,
                booked_at: t.booked_at,
                amount: t.amount,
                currency: currency.clone(),
                description: t.description,
                merchant_name: t.merchant_name,
                category: Some(t.category),
                pending: false,
                reference: None,
            })
            .collect(),
        currency,
    })
}

impl Services {
    fn sandbox_only(&self) -> Result<(), Error> {
        if self.sandbox {
            Ok(())
        } else {
            Err(Error::SandboxOff)
        }
    }

    /// Creates a user of any source.
    pub async fn sandbox_user(
        &self,
        partner: Uuid,
        source: UserSource,
        external_reference: Option<&str>,
    ) -> Result<User, Error> {
        self.sandbox_only()?;
        super::users::check_reference(external_reference)?;
        self.store
            .users()
            .create(
                partner,
                source,
                external_reference,
                self.clock.now_for(partner),
                self.user_cap(),
            )
            .await?
            .ok_or_else(|| self.users_quota_reached())
    }

    /// The most users a partner may hold here: bounded on a sandbox server only.
    pub(super) fn user_cap(&self) -> Option<u32> {
        self.sandbox
            .then_some(self.limits.sandbox_users_per_partner)
    }

    pub(super) fn users_quota_reached(&self) -> Error {
        Limit::Sandbox.reached(format!(
            "a partner may hold at most {} users on a sandbox server",
            self.limits.sandbox_users_per_partner
        ))
    }

    /// Connects accounts in chosen states to one of the partner's users, in one transaction
    /// (with `initial_fetch`, also queues their first fetch); answers them in order.
    pub async fn connect_accounts(
        &self,
        partner: Uuid,
        user_id: Uuid,
        accounts: Vec<AccountSpec>,
        initial_fetch: bool,
    ) -> Result<Vec<Account>, Error> {
        self.sandbox_only()?;
        if accounts.is_empty() || accounts.len() > MAX_ACCOUNTS {
            return Err(Error::Invalid(format!(
                "accounts must hold 1 to {MAX_ACCOUNTS} items"
            )));
        }
        let seed = u64::from_le_bytes(user_id.as_bytes()[..8].try_into().unwrap_or_default());
        let max_transactions = self.limits.sandbox_transactions_per_account;
        let accounts = accounts
            .into_iter()
            .enumerate()
            .map(|(i, a)| new_account(i, a, partner, seed.wrapping_add(i as u64), max_transactions))
            .collect::<Result<Vec<_>, _>>()?;
        let quota = ConnectQuota {
            accounts_per_user: self.limits.sandbox_accounts_per_user,
            transactions_per_partner: self.limits.sandbox_transactions_per_partner,
        };
        let now = self.clock.now_for(partner);
        match self
            .store
            .accounts()
            .connect(
                partner,
                user_id,
                &accounts,
                initial_fetch.then(|| self.clock.now()),
                now,
                quota,
            )
            .await?
        {
            Connected::Accounts(mut accounts) => {
                self.name_banks(&mut accounts);
                Ok(accounts)
            }
            Connected::NoSuchUser => Err(Error::UserNotFound),
            Connected::OverQuota => Err(Limit::Sandbox.reached(format!(
                "a sandbox user may hold at most {} accounts, and a partner's sandbox users at most {} transactions of history",
                quota.accounts_per_user, quota.transactions_per_partner
            ))),
        }
    }

    /// A new direct user whose accounts are in the states of `preset`.
    pub async fn preset_user(
        &self,
        partner: &Partner,
        preset: Preset,
        external_reference: &str,
    ) -> Result<User, Error> {
        let user = self
            .sandbox_user(partner.id, UserSource::Direct, Some(external_reference))
            .await?;
        let accounts = preset.accounts(self.clock.now_for(partner.id));
        if !accounts.is_empty() {
            self.connect_accounts(partner.id, user.user_id, accounts, false)
                .await?;
        }
        Ok(user)
    }

    /// Makes the sandbox bank slow or failing for one of the partner's accounts, or for all
    /// of them (never another partner's). Neither latency nor kind clears that fault.
    pub async fn set_fault(&self, partner: Uuid, fault: FaultSpec) -> Result<(), Error> {
        self.sandbox_only()?;
        let bank = self.sandbox_bank.as_ref().ok_or(Error::NoSandboxBank)?;
        if fault.jitter_percent.is_some_and(|p| p > 100) {
            return Err(Error::Invalid(
                "jitterPercent must be at most 100".to_owned(),
            ));
        }
        if fault.latency_ms.is_some_and(|ms| ms > MAX_FAULT_LATENCY_MS) {
            return Err(Error::Invalid(format!(
                "latencyMs must be at most {MAX_FAULT_LATENCY_MS}"
            )));
        }
        if fault
            .retry_after_seconds
            .is_some_and(|s| s > MAX_FAULT_RETRY_AFTER_SECONDS)
        {
            return Err(Error::Invalid(format!(
                "retryAfterSeconds must be at most {MAX_FAULT_RETRY_AFTER_SECONDS}"
            )));
        }
        let scope = match fault.account_id {
            Some(account) => {
                if !self.store.accounts().is_partners(partner, account).await? {
                    return Err(Error::AccountNotFound(
                        "the accountId does not exist for this partner",
                    ));
                }
                FaultScope::PartnerAccount {
                    partner: partner.to_string(),
                    account: account.to_string(),
                }
            }
            None => FaultScope::Partner(partner.to_string()),
        };
        bank.set_scoped_fault(
            scope,
            Fault {
                account_id: fault.account_id.map(|a| a.to_string()),
                latency_ms: fault.latency_ms,
                jitter_percent: fault.jitter_percent,
                kind: fault.kind,
                retry_after_seconds: fault.retry_after_seconds,
            },
        );
        Ok(())
    }

    /// The partner's clock now.
    pub fn clock_state(&self, partner: Uuid) -> Result<ClockState, Error> {
        self.sandbox_only()?;
        Ok(ClockState {
            now: self.clock.now_for(partner),
            offset_seconds: self.clock.offset_of(partner).num_seconds(),
        })
    }

    /// Sets the partner's offset from real time (within ten years); other partners' time
    /// does not move.
    pub fn set_clock_offset(
        &self,
        partner: Uuid,
        offset_seconds: i64,
    ) -> Result<ClockState, Error> {
        self.sandbox_only()?;
        let offset = TimeDelta::try_seconds(offset_seconds)
            .filter(|_| offset_seconds.abs() <= MAX_CLOCK_OFFSET_SECONDS)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "offsetSeconds must be within ten years (±{MAX_CLOCK_OFFSET_SECONDS})"
                ))
            })?;
        self.clock.set_offset_of(partner, offset);
        self.clock_state(partner)
    }

    /// Moves the partner's clock by `minutes` from where it is (at most a week at a time,
    /// within ten years in all).
    pub fn shift_clock(&self, partner: Uuid, minutes: i64) -> Result<(), Error> {
        self.sandbox_only()?;
        if !(-10_080..=10_080).contains(&minutes) {
            return Err(Error::Invalid(
                "Shift by at most a week at a time.".to_owned(),
            ));
        }
        let seconds = self.clock.offset_of(partner).num_seconds() + minutes * 60;
        self.set_clock_offset(partner, seconds).map(|_| ())
    }
}

/// Turns a store failure met while seeding into the demo's error.
pub fn seed_error(e: Error) -> StoreError {
    match e {
        Error::Store(e) => e,
        other => StoreError::Encoding(other.to_string()),
    }
}
