//! The server's side of the portal: sessions (sign-in, sign-out, the gate in front of every
//! page and server function), the portal's event stream, and [`StorePortal`], the services
//! its server functions call — the same store, refresh service and webhook rules as the
//! partner API, acting for the signed-in user's partner.

pub mod session;

use std::sync::Arc;

use app::model::{
    AccountOutcome, ApiKeyView, AttemptView, ChartPoint, ItemProgress, JobDetail, JobEventView,
    JobItemView, JobListItem, JobProgress, JobsPage, PortalAccount, RefreshReply,
    SubscriptionDetail, SubscriptionView, UserDetail, UserListItem, UsersPage, Viewer,
};
use app::services::{PortalServices, ServiceError};
use chrono::TimeDelta;
use uuid::Uuid;

use crate::api::{Api, ApiError};
use crate::bank::sandbox::{Fault, FaultKind};
use crate::model::{Partner, UserSource};
use crate::refresh::{RefreshCommand, RefreshError};
use crate::store::webhooks::SubscriptionChange;
use crate::store::{JobRow, StoreError};
use crate::webhooks::model::{Subscription, SubscriptionStatus, TEST_EVENT_TYPE};

const USERS_PER_PAGE: u32 = 25;
const JOBS_PER_PAGE: u32 = 25;

/// How long a stashed secret waits for its one showing.
const STASH_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A secret waiting for its one showing: (partner, secret, until).
type Stashed = (String, String, std::time::Instant);

/// The portal's services over the partner API's.
#[derive(Debug, Clone)]
pub struct StorePortal {
    api: Arc<Api>,
    /// Secrets made by a form post, kept (in memory only) until the page they are shown
    /// on reads them: the redirect's URL carries a token, never the secret.
    stash: Arc<std::sync::Mutex<std::collections::HashMap<String, Stashed>>>,
}

impl StorePortal {
    /// Services acting through `api`.
    pub fn new(api: Arc<Api>) -> Self {
        Self {
            api,
            stash: Arc::default(),
        }
    }

    async fn partner(&self, viewer: &Viewer) -> Result<Partner, ServiceError> {
        let id = partner_id(viewer)?;
        self.api
            .store
            .partner_by_id(id)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)
    }
}

fn internal(e: StoreError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

fn invalid(e: ApiError) -> ServiceError {
    match e {
        ApiError::Internal(m) => ServiceError::Internal(m),
        ApiError::NotFound(..) => ServiceError::NotFound,
        other => ServiceError::Invalid(other.to_string()),
    }
}

fn partner_id(viewer: &Viewer) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(&viewer.partner_id).map_err(|_| ServiceError::NotFound)
}

/// Another partner's id and a malformed one read the same: not found.
fn id(text: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(text.trim()).map_err(|_| ServiceError::NotFound)
}

fn job_item(row: JobRow) -> JobListItem {
    JobListItem {
        job_id: row.job_id,
        user_id: row.user_id,
        kind: row.kind,
        status: row.status,
        created_at: row.created_at,
        finished_at: row.finished_at,
        accounts: row.accounts,
        done: row.done,
    }
}

fn subscription_view(s: Subscription) -> SubscriptionView {
    SubscriptionView {
        id: s.subscription_id.to_string(),
        target_url: s.target_url,
        event_types: s.event_types,
        status: match s.status {
            SubscriptionStatus::Active => "ACTIVE",
            SubscriptionStatus::Paused => "PAUSED",
            SubscriptionStatus::Disabled => "DISABLED",
        }
        .to_owned(),
        disabled_reason: s.disabled_reason,
        created_at: s.created_at,
    }
}

fn screaming<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl PortalServices for StorePortal {
    async fn users(
        &self,
        viewer: &Viewer,
        query: &str,
        page: u32,
    ) -> Result<UsersPage, ServiceError> {
        let partner = partner_id(viewer)?;
        let page = page.max(1);
        let (rows, has_more) = self
            .api
            .store
            .users_page(partner, query, (page - 1) * USERS_PER_PAGE, USERS_PER_PAGE)
            .await
            .map_err(internal)?;
        Ok(UsersPage {
            items: rows
                .into_iter()
                .map(|u| UserListItem {
                    user_id: u.user_id,
                    source: u.source,
                    external_reference: u.external_reference,
                    created_at: u.created_at,
                    accounts: u.accounts,
                    last_refresh: u.last_refresh,
                })
                .collect(),
            has_more,
            now: self.api.clock.now(),
        })
    }

    async fn user(&self, viewer: &Viewer, user_id: &str) -> Result<UserDetail, ServiceError> {
        let partner = partner_id(viewer)?;
        let user_id = id(user_id)?;
        let store = &self.api.store;
        let user = store
            .user(partner, user_id)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)?;
        let accounts = store
            .accounts(partner, user_id)
            .await
            .map_err(internal)?
            .unwrap_or_default();
        let counts = store.transaction_counts(user_id).await.map_err(internal)?;
        let open_job = match store
            .open_job_of(partner, user_id)
            .await
            .map_err(internal)?
        {
            Some(job) => Some(self.job_progress(viewer, &job).await?),
            None => None,
        };
        Ok(UserDetail {
            user_id: user.user_id.to_string(),
            source: user.source.as_str().to_owned(),
            external_reference: user.external_reference,
            now: self.api.clock.now(),
            interval_seconds: self.api.policy.interval().num_seconds(),
            accounts: accounts
                .into_iter()
                .map(|a| {
                    let id = a.account_id.to_string();
                    PortalAccount {
                        transaction_count: counts
                            .iter()
                            .find(|(acc, _)| *acc == id)
                            .map_or(0, |(_, n)| *n),
                        account_id: id,
                        provider_name: a.provider_name,
                        account_type: a.account_type,
                        consent_status: a.consent_status,
                        consent_expires_at: a.consent_expires_at,
                        last_transaction_refresh_date: a.last_transaction_refresh_date,
                        in_flight_since: a.in_flight_since,
                    }
                })
                .collect(),
            open_job,
            sandbox: self.api.sandbox,
        })
    }

    async fn refresh(&self, viewer: &Viewer, user_id: &str) -> Result<RefreshReply, ServiceError> {
        let partner = self.partner(viewer).await?;
        let user_id = id(user_id)?;
        let refused = |why: String| RefreshReply {
            status: 403,
            job_id: None,
            accounts: Vec::new(),
            next_refresh_available_at: None,
            refused: Some(why),
        };
        let response = match self
            .api
            .refresh
            .refresh(RefreshCommand {
                partner,
                user_id,
                idempotency_key: None,
            })
            .await
        {
            Ok(response) => response,
            Err(RefreshError::UserNotFound) => return Err(ServiceError::NotFound),
            Err(e @ (RefreshError::MarketplaceUser | RefreshError::DirectNotEnabled)) => {
                return Ok(refused(format!("Refused: {e}.")));
            }
            Err(e) => return Err(invalid(ApiError::from(e))),
        };
        let body: serde_json::Value = serde_json::from_str(&response.body)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Ok(RefreshReply {
            status: response.status,
            job_id: text(&body["jobId"]),
            accounts: body["metadata"]["accounts"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|a| AccountOutcome {
                            account_id: text(&a["accountId"]).unwrap_or_default(),
                            outcome: text(&a["reason"])
                                .unwrap_or_else(|| text(&a["outcome"]).unwrap_or_default()),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            next_refresh_available_at: body["metadata"]["nextRefreshAvailableAt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            refused: None,
        })
    }

    async fn job_progress(
        &self,
        viewer: &Viewer,
        job_id: &str,
    ) -> Result<JobProgress, ServiceError> {
        let partner = partner_id(viewer)?;
        let store = &self.api.store;
        let (job, items, _) = store
            .job_detail(partner, id(job_id)?)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)?;
        let user = id(&job.user_id)?;
        let accounts = store
            .accounts(partner, user)
            .await
            .map_err(internal)?
            .unwrap_or_default();
        let counts = store.transaction_counts(user).await.map_err(internal)?;
        Ok(JobProgress {
            job_id: job.job_id,
            status: job.status,
            items: items
                .into_iter()
                .map(|it| ItemProgress {
                    last_refresh: accounts
                        .iter()
                        .find(|a| a.account_id.to_string() == it.account_id)
                        .and_then(|a| a.last_transaction_refresh_date),
                    transaction_count: counts
                        .iter()
                        .find(|(a, _)| *a == it.account_id)
                        .map_or(0, |(_, n)| *n),
                    account_id: it.account_id,
                    state: it.state,
                    new_transactions: it.new_transactions,
                    error_code: it.error_code,
                })
                .collect(),
        })
    }

    async fn jobs(
        &self,
        viewer: &Viewer,
        page: u32,
        user_id: &str,
    ) -> Result<JobsPage, ServiceError> {
        let partner = partner_id(viewer)?;
        let user = if user_id.trim().is_empty() {
            None
        } else {
            Some(id(user_id)?)
        };
        let page = page.max(1);
        let (rows, has_more) = self
            .api
            .store
            .jobs_page(partner, user, (page - 1) * JOBS_PER_PAGE, JOBS_PER_PAGE)
            .await
            .map_err(internal)?;
        Ok(JobsPage {
            items: rows.into_iter().map(job_item).collect(),
            has_more,
        })
    }

    async fn job(&self, viewer: &Viewer, job_id: &str) -> Result<JobDetail, ServiceError> {
        let (job, items, events) = self
            .api
            .store
            .job_detail(partner_id(viewer)?, id(job_id)?)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)?;
        Ok(JobDetail {
            job: job_item(job),
            items: items
                .into_iter()
                .map(|it| JobItemView {
                    account_id: it.account_id,
                    state: it.state,
                    attempts: it.attempts,
                    started_at: it.started_at,
                    finished_at: it.finished_at,
                    new_transactions: it.new_transactions,
                    error_code: it.error_code,
                })
                .collect(),
            events: events
                .into_iter()
                .map(|e| JobEventView {
                    event_id: e.event_id,
                    event_type: e.event_type,
                    account_id: e.account_id,
                    created_at: e.created_at,
                    deliveries: e.deliveries,
                })
                .collect(),
        })
    }

    async fn subscriptions(&self, viewer: &Viewer) -> Result<Vec<SubscriptionView>, ServiceError> {
        let subs = self
            .api
            .store
            .subscriptions(partner_id(viewer)?, self.api.clock.now())
            .await
            .map_err(internal)?;
        Ok(subs.into_iter().map(subscription_view).collect())
    }

    async fn subscription(
        &self,
        viewer: &Viewer,
        sub: &str,
    ) -> Result<SubscriptionDetail, ServiceError> {
        let partner = partner_id(viewer)?;
        let sub = id(sub)?;
        let store = &self.api.store;
        let now = self.api.clock.now();
        let subscription = store
            .subscription(partner, sub, now)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)?;
        let (attempts, _) = store
            .attempts(partner, sub, None, None, 100)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)?;
        let chart = store
            .attempt_points(partner, sub, now - TimeDelta::hours(24))
            .await
            .map_err(internal)?;
        Ok(SubscriptionDetail {
            subscription: subscription_view(subscription),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptView {
                    outcome: screaming(&a.outcome),
                    delivery_status: screaming(&a.delivery_status),
                    event_id: a.event_id,
                    event_type: a.event_type,
                    attempt: a.attempt,
                    attempted_at: a.attempted_at,
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    error_kind: a.error_kind,
                    response_excerpt: a.response_excerpt,
                    next_attempt_at: a.next_attempt_at,
                })
                .collect(),
            chart: chart
                .into_iter()
                .map(|p| ChartPoint {
                    at: p.at,
                    latency_ms: p.latency_ms,
                    succeeded: p.succeeded,
                })
                .collect(),
            now,
        })
    }

    async fn create_subscription(
        &self,
        viewer: &Viewer,
        target_url: &str,
        event_types: Vec<String>,
    ) -> Result<(String, String), ServiceError> {
        let partner = partner_id(viewer)?;
        let types = crate::api::webhooks::event_types(event_types).map_err(invalid)?;
        let url = crate::api::webhooks::target(&self.api, target_url.trim())
            .await
            .map_err(invalid)?;
        let secret = crate::api::webhooks::new_secret().map_err(invalid)?;
        let sub = self
            .api
            .store
            .create_subscription(partner, &url, &types, secret.expose(), self.api.clock.now())
            .await
            .map_err(internal)?;
        Ok((sub.subscription_id.to_string(), secret.expose().to_owned()))
    }

    async fn subscription_action(
        &self,
        viewer: &Viewer,
        sub: &str,
        action: &str,
    ) -> Result<Option<String>, ServiceError> {
        let partner = partner_id(viewer)?;
        let sub = id(sub)?;
        let store = &self.api.store;
        let now = self.api.clock.now();
        let found = match action {
            "pause" | "resume" => {
                let change = SubscriptionChange {
                    paused: Some(action == "pause"),
                    ..SubscriptionChange::default()
                };
                let done = store
                    .update_subscription(partner, sub, &change, now)
                    .await
                    .map_err(internal)?
                    .is_some();
                store.want_deliveries();
                done
            }
            "test" => {
                let done = store
                    .enqueue_test_event(
                        partner,
                        sub,
                        &Uuid::new_v4().to_string(),
                        TEST_EVENT_TYPE,
                        &crate::webhooks::test_event_payload(),
                        now,
                    )
                    .await
                    .map_err(internal)?;
                store.want_deliveries();
                done
            }
            "delete" => store
                .delete_subscription(partner, sub)
                .await
                .map_err(internal)?,
            "rotate" => {
                let secret = crate::api::webhooks::new_secret().map_err(invalid)?;
                return match store
                    .rotate_secret(
                        partner,
                        sub,
                        secret.expose(),
                        crate::webhooks::ROTATION_OVERLAP,
                        now,
                    )
                    .await
                    .map_err(internal)?
                {
                    Some(_) => Ok(Some(secret.expose().to_owned())),
                    None => Err(ServiceError::NotFound),
                };
            }
            other => return Err(ServiceError::Invalid(format!("unknown action {other:?}"))),
        };
        if found {
            Ok(None)
        } else {
            Err(ServiceError::NotFound)
        }
    }

    async fn redeliver(
        &self,
        viewer: &Viewer,
        sub: &str,
        event_id: &str,
    ) -> Result<(), ServiceError> {
        let store = &self.api.store;
        match store
            .redeliver(
                partner_id(viewer)?,
                id(sub)?,
                event_id,
                self.api.clock.now(),
            )
            .await
            .map_err(internal)?
        {
            Some(true) => {
                store.want_deliveries();
                Ok(())
            }
            _ => Err(ServiceError::NotFound),
        }
    }

    async fn recover(&self, viewer: &Viewer, sub: &str, hours: u32) -> Result<u64, ServiceError> {
        let store = &self.api.store;
        let now = self.api.clock.now();
        let since = now - TimeDelta::hours(i64::from(hours.clamp(1, 24 * 30)));
        let n = store
            .recover(partner_id(viewer)?, id(sub)?, since, now)
            .await
            .map_err(internal)?
            .ok_or(ServiceError::NotFound)?;
        store.want_deliveries();
        Ok(n)
    }

    async fn api_keys(&self, viewer: &Viewer) -> Result<Vec<ApiKeyView>, ServiceError> {
        let keys = self
            .api
            .store
            .api_keys(partner_id(viewer)?)
            .await
            .map_err(internal)?;
        Ok(keys
            .into_iter()
            .map(|k| ApiKeyView {
                id: k.id,
                prefix: k.prefix,
                created_at: k.created_at,
                revoked_at: k.revoked_at,
            })
            .collect())
    }

    async fn create_api_key(&self, viewer: &Viewer) -> Result<String, ServiceError> {
        self.api
            .store
            .create_api_key(partner_id(viewer)?, self.api.clock.now())
            .await
            .map_err(internal)
    }

    async fn revoke_api_key(&self, viewer: &Viewer, key: &str) -> Result<(), ServiceError> {
        if self
            .api
            .store
            .revoke_api_key(partner_id(viewer)?, key, self.api.clock.now())
            .await
            .map_err(internal)?
        {
            // Cached keys would keep working until a restart otherwise.
            self.api.partners.forget_all();
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    async fn stash_secret(&self, viewer: &Viewer, secret: String) -> Result<String, ServiceError> {
        let mut bytes = [0_u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = std::time::Instant::now();
        let mut stash = self
            .stash
            .lock()
            .map_err(|_| ServiceError::Internal("stash poisoned".to_owned()))?;
        stash.retain(|_, (_, _, until)| *until > now);
        stash.insert(
            token.clone(),
            (viewer.partner_id.clone(), secret, now + STASH_TTL),
        );
        Ok(token)
    }

    async fn take_secret(
        &self,
        viewer: &Viewer,
        token: &str,
    ) -> Result<Option<String>, ServiceError> {
        let mut stash = self
            .stash
            .lock()
            .map_err(|_| ServiceError::Internal("stash poisoned".to_owned()))?;
        Ok(match stash.remove(token) {
            Some((partner, secret, until))
                if partner == viewer.partner_id && until > std::time::Instant::now() =>
            {
                Some(secret)
            }
            // Another partner's token: put it back untouched, say nothing.
            Some(entry) if entry.0 != viewer.partner_id => {
                stash.insert(token.to_owned(), entry);
                None
            }
            _ => None,
        })
    }

    async fn sandbox_user(&self, viewer: &Viewer, preset: &str) -> Result<String, ServiceError> {
        self.sandbox_only()?;
        let partner = partner_id(viewer)?;
        let now = self.api.clock.now();
        let store = &self.api.store;
        let user = store
            .create_user(
                partner,
                UserSource::Direct,
                Some(&format!("sandbox {preset}")),
                now,
            )
            .await
            .map_err(internal)?;
        let accounts = crate::demo::preset(preset, now);
        if !accounts.is_empty() {
            store
                .connect_accounts(partner, user.user_id, &accounts, false, now)
                .await
                .map_err(internal)?;
        }
        Ok(user.user_id.to_string())
    }

    async fn sandbox_fault(
        &self,
        _viewer: &Viewer,
        kind: &str,
        latency_ms: u32,
    ) -> Result<(), ServiceError> {
        self.sandbox_only()?;
        let bank =
            self.api.sandbox_bank.as_ref().ok_or_else(|| {
                ServiceError::Invalid("This server has no sandbox bank.".to_owned())
            })?;
        let kind = match kind {
            "none" => None,
            "server_error" => Some(FaultKind::ServerError),
            "rate_limited" => Some(FaultKind::RateLimited),
            "timeout" => Some(FaultKind::Hang),
            "consent_revoked" => Some(FaultKind::ConsentRevoked),
            other => {
                return Err(ServiceError::Invalid(format!(
                    "unknown bank behaviour {other:?}"
                )));
            }
        };
        // Clear first: a fault replaces the bank's behaviour, latency included.
        bank.set_fault(Fault::default());
        if kind.is_some() || latency_ms > 0 {
            bank.set_fault(Fault {
                kind,
                latency_ms: (latency_ms > 0).then_some(u64::from(latency_ms)),
                ..Fault::default()
            });
        }
        Ok(())
    }

    async fn sandbox_shift_clock(
        &self,
        _viewer: &Viewer,
        minutes: i64,
    ) -> Result<(), ServiceError> {
        self.sandbox_only()?;
        if !(-10_080..=10_080).contains(&minutes) {
            return Err(ServiceError::Invalid(
                "Shift by at most a week at a time.".to_owned(),
            ));
        }
        self.api.clock.shift(TimeDelta::minutes(minutes));
        Ok(())
    }
}

impl StorePortal {
    fn sandbox_only(&self) -> Result<(), ServiceError> {
        if self.api.sandbox {
            Ok(())
        } else {
            Err(ServiceError::Invalid(
                "The sandbox is off on this server (start it with --sandbox).".to_owned(),
            ))
        }
    }
}
