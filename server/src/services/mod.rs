//! The use cases, one function per thing a partner or a portal user can do, over typed
//! inputs, outputs and errors ([`Error`]). Both fronts call them: `api/` renders their
//! results as JSON and their errors as problem+json, `portal/` as pages. A use case that
//! makes work due wakes the loop that does it (the webhook deliverer), so no front has to
//! remember to. Only `store/` below speaks SQL.

pub mod banks;
pub mod connections;
pub mod events;
mod jobs;
pub mod journey;
mod keys;
pub mod limits;
pub mod operations;
pub mod refresh;
pub mod sandbox;
pub mod sessions;
mod users;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use freshet_rules::RefreshPolicy;
use sha2::{Digest, Sha256};

pub use jobs::{JobDetail, JobProgress};
pub use limits::{ApiRate, Limit, Limits, Throttled};
pub use refresh::{RefreshAnswer, RefreshCommand, RefreshOutcome};
pub use users::UserDetail;

use crate::bank::directory::Directory;
use crate::bank::openbanking::OpenBankingBank;
use crate::bank::sandbox::SandboxBank;
use crate::clock::Clock;
use crate::model::Partner;
use crate::secrets::Keyring;
use crate::store::{Store, StoreError};
use crate::webhooks::TargetPolicy;
use refresh::RefreshService;
use sessions::SignInGuard;

/// Why a use case did not happen. Each front words it its own way.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such user for this partner (another partner's user reads the same).
    #[error("the userId does not exist for this partner")]
    UserNotFound,
    /// No such account (for this user, or for this partner).
    #[error("{0}")]
    AccountNotFound(&'static str),
    /// No such job for this user.
    #[error("the jobId does not exist for this user")]
    JobNotFound,
    /// No such webhook subscription for this partner.
    #[error("the subscriptionId does not exist for this partner")]
    SubscriptionNotFound,
    /// No such API key of this partner, or it is revoked already.
    #[error("no such active API key")]
    KeyNotFound,
    /// The subscription has no delivery of that event.
    #[error("this subscription has no delivery of that eventId")]
    DeliveryNotFound,
    /// Marketplace-sourced users are never refreshed on demand.
    #[error("on-demand refresh is only available for users of the direct connection journey")]
    MarketplaceUser,
    /// The partner is not enrolled in the direct connection journey.
    #[error("this partner is not enabled for the direct connection journey")]
    DirectNotEnabled,
    /// The `Idempotency-Key` was first used for another user.
    #[error("this Idempotency-Key was already used for another user")]
    IdempotencyKeyReused,
    /// Event types that are none, or unknown.
    #[error("{0}")]
    InvalidEventType(String),
    /// A webhook target that is not an https URL whose host resolves.
    #[error("{0}")]
    InvalidTarget(String),
    /// A webhook target that is, or resolves to, a non-public address.
    #[error("{0}")]
    TargetNotAllowed(String),
    /// A body whose fields are each well formed but do not fit together.
    #[error("{0}")]
    Inconsistent(String),
    /// Some other input is wrong; the text says how.
    #[error("{0}")]
    Invalid(String),
    /// The server runs no sandbox (`--sandbox`).
    #[error("the sandbox is off on this server")]
    SandboxOff,
    /// The server runs no sandbox bank.
    #[error("this server runs no sandbox bank")]
    NoSandboxBank,
    /// The partner sent more requests than its share of the API.
    #[error("too many requests from this partner; try again in {} seconds", .0.retry_after_seconds)]
    Throttled(Throttled),
    /// A partner's quota would be passed; the text says which and how far it goes.
    #[error("{1}")]
    LimitReached(Limit, String),
    /// A `partnerRedirectUrl` that is not an absolute https URL.
    #[error(
        "partnerRedirectUrl must be an absolute https URL (http://localhost only in development)"
    )]
    InvalidRedirect,
    /// No such session for this partner, or it expired.
    #[error("the session does not exist for this partner, or it has expired")]
    SessionNotFound,
    /// The termination token is not one this partner was given.
    #[error("the session termination token is not valid")]
    SessionTokenInvalid,
    /// The bank did not answer (or is rate-limiting us): nothing was connected, try again.
    #[error("the bank is unavailable; nothing was connected, try again later")]
    BankUnavailable,
    /// The request could not be recorded; nothing of it was kept: try again.
    #[error("the refresh could not be recorded; nothing was triggered, try again")]
    NotCommitted,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else of ours.
    #[error("internal: {0}")]
    Internal(String),
}

/// What every use case may need, built once at start-up.
#[derive(Debug)]
pub struct Services {
    /// The database.
    pub store: Store,
    /// The server's clock (shiftable in the sandbox).
    pub clock: Arc<Clock>,
    /// The refresh interval.
    pub policy: RefreshPolicy,
    /// Whether the sandbox is on (`/sandbox/v1`, the portal's sandbox page).
    pub sandbox: bool,
    /// Every partner's quotas.
    pub limits: Limits,
    refresh: RefreshService,
    partners: PartnerCache,
    sandbox_bank: Option<Arc<SandboxBank>>,
    webhook_targets: TargetPolicy,
    sign_ins: SignInGuard,
    api_rate: Option<ApiRate>,
    /// The banks' connectors (the workers fetch through the same directory).
    bank_directory: Directory,
    /// The connectors of registered Open Banking banks, by bank id (added while serving
    /// too: a bank registered later).
    open_banking: RwLock<HashMap<String, Arc<OpenBankingBank>>>,
    /// The base URL of freshet's own pages, as browsers reach them (`--public-url`).
    public_url: std::sync::OnceLock<String>,
    /// The keys that seal secrets at rest.
    keys: Keyring,
    /// Bumped at every revocation, so that open streams check their grant at once.
    revocations: tokio::sync::watch::Sender<u64>,
}

impl Services {
    /// The services over `store`, starting the refresh writer on the current runtime.
    pub fn new(store: Store, clock: Arc<Clock>, policy: RefreshPolicy, sandbox: bool) -> Self {
        Self {
            refresh: RefreshService::start(store.clone(), Arc::clone(&clock), policy),
            store,
            clock,
            policy,
            sandbox,
            limits: Limits::default(),
            partners: PartnerCache::default(),
            sandbox_bank: None,
            webhook_targets: TargetPolicy::secure(),
            sign_ins: SignInGuard::default(),
            api_rate: None,
            bank_directory: Directory::default(),
            open_banking: RwLock::default(),
            public_url: std::sync::OnceLock::new(),
            keys: Keyring::ephemeral().unwrap_or_else(|e| panic!("no randomness for a key: {e}")),
            revocations: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The same services with another webhook target policy (`--insecure-webhook-targets`).
    pub fn with_webhook_targets(self, webhook_targets: TargetPolicy) -> Self {
        Self {
            webhook_targets,
            ..self
        }
    }

    /// The same services, allowing each client address `per_minute` sign-in attempts a minute.
    pub fn with_sign_ins_per_client(self, per_minute: u32) -> Self {
        Self {
            sign_ins: SignInGuard::per_client(per_minute),
            ..self
        }
    }

    /// The same services with other quotas.
    pub fn with_limits(self, limits: Limits) -> Self {
        Self { limits, ..self }
    }

    /// The same services, with the sandbox bank whose faults the sandbox sets.
    pub fn with_sandbox_bank(self, bank: Arc<SandboxBank>) -> Self {
        Self {
            sandbox_bank: Some(bank),
            ..self
        }
    }

    /// The same services, sealing secrets with `keys`.
    pub fn with_keys(self, keys: Keyring) -> Self {
        Self { keys, ..self }
    }

    /// Sets the base URL of freshet's pages (once; later calls change nothing).
    pub fn set_public_url(&self, url: &str) {
        let _ = self.public_url.set(url.trim_end_matches('/').to_owned());
    }

    /// The same services, reaching banks through `directory`.
    pub fn with_bank_directory(self, bank_directory: Directory) -> Self {
        Self {
            bank_directory,
            ..self
        }
    }

    /// Adds a registered bank's connector: to the directory (the workers' and the
    /// journey's), and as an Open Banking bank whose consents can be connected.
    pub fn add_open_banking(&self, name: &str, connector: Arc<OpenBankingBank>) {
        let fetcher = Arc::clone(&connector) as Arc<dyn crate::bank::Bank>;
        self.add_bank(name, fetcher, connector);
    }

    /// Adds the in-process sandbox bank (`--sandbox`) as bank `sandbox`: its journey
    /// consents through `oauth`, everything it holds through `connector`.
    pub fn add_sandbox_bank(
        &self,
        connector: crate::bank::sandbox::in_process::SandboxConnector,
        oauth: Arc<OpenBankingBank>,
    ) {
        self.add_bank(banks::SANDBOX_NAME, Arc::new(connector), oauth);
    }

    /// Bank `oauth`'s id fetched through `fetcher` (within its limits), and its consents
    /// connected through `oauth`.
    fn add_bank(
        &self,
        name: &str,
        fetcher: Arc<dyn crate::bank::Bank>,
        oauth: Arc<OpenBankingBank>,
    ) {
        let id = oauth.bank_id().to_owned();
        self.bank_directory
            .register(&id, name, Some(fetcher), oauth.limits());
        if let Ok(mut banks) = self.open_banking.write() {
            banks.insert(id, oauth);
        }
    }

    /// The connector of registered bank `id`.
    pub(crate) fn open_banking(&self, id: &str) -> Option<Arc<OpenBankingBank>> {
        self.open_banking.read().ok()?.get(id).cloned()
    }

    /// The directory of the banks' connectors.
    pub fn bank_directory(&self) -> &Directory {
        &self.bank_directory
    }

    /// The same services, each partner's API requests limited by `rate` (none: unlimited).
    pub fn with_api_rate(self, api_rate: Option<ApiRate>) -> Self {
        Self { api_rate, ..self }
    }

    /// The partner holding API key `key`.
    pub async fn partner_by_key(&self, key: &str) -> Result<Option<Partner>, Error> {
        Ok(self.partners.by_key(&self.store, key).await?)
    }

    /// The partner holding API key `key`, if its share of the API has room for this request.
    pub async fn admit(&self, key: &str) -> Result<Option<Partner>, Error> {
        let partner = self.partner_by_key(key).await?;
        if let Some(p) = &partner {
            self.admit_partner(p.id).map_err(Error::Throttled)?;
        }
        Ok(partner)
    }

    /// Takes one request from `partner`'s share of the server (its API key's requests and
    /// its staff's portal requests draw on the same bucket).
    pub fn admit_partner(&self, partner: uuid::Uuid) -> Result<(), Throttled> {
        self.api_rate
            .as_ref()
            .map_or(Ok(()), |rate| rate.admit(partner))
    }

    /// A partner by its id.
    pub async fn partner(&self, id: uuid::Uuid) -> Result<Option<Partner>, Error> {
        Ok(self.store.partners().by_id(id).await?)
    }
}

/// Known API keys (by hash) and their partners, so that authentication costs no query
/// after a key's first request. A revocation here forgets them all; one made by another
/// process on the same database holds once an entry is [`KEY_CACHE_TTL`] old.
#[derive(Debug, Default)]
struct PartnerCache {
    by_hash: RwLock<HashMap<[u8; 32], (Partner, std::time::Instant)>>,
}

/// How long a key's partner is believed without asking the database again.
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl PartnerCache {
    async fn by_key(&self, store: &Store, key: &str) -> Result<Option<Partner>, StoreError> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let known = self.by_hash.read().ok().and_then(|m| {
            m.get(&hash)
                .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
                .map(|(p, _)| p.clone())
        });
        if known.is_some() {
            return Ok(known);
        }
        let partner = store.partners().by_key(key).await?;
        if let Ok(mut m) = self.by_hash.write() {
            match &partner {
                Some(p) => m.insert(hash, (p.clone(), std::time::Instant::now())),
                None => m.remove(&hash),
            };
        }
        Ok(partner)
    }

    fn forget_all(&self) {
        if let Ok(mut m) = self.by_hash.write() {
            m.clear();
        }
    }
}
