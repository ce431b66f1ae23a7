//! The server's side of the portal: sessions (sign-in, sign-out, the gate in front of every
//! page and server function), the portal's event stream, and [`Portal`], which answers the
//! app's server functions from the same use cases (`services`) as the partner API, acting
//! for the signed-in user's partner, and words their failures for people.

pub mod session;

use std::sync::Arc;

use app::model::{
    AccountOutcome, ApiKeyView, AttemptOutcome as AttemptOutcomeView, AttemptView, ChartPoint,
    DeliveryState, FaultKind as FaultChoice, ItemProgress, JobDetail, JobEventView, JobItemView,
    JobKind as JobKindView, JobListItem, JobProgress, JobState, JobsPage, PortalAccount,
    RefreshReply, SubscriptionAction, SubscriptionDetail, SubscriptionState, SubscriptionView,
    UserDetail, UserListItem, UserSource as UserSourceView, UsersPage, Viewer,
};
use app::services::{
    JobPages, KeyPages, SandboxPages, ServiceError, Services as PortalServices, UserPages,
    WebhookPages,
};
use chrono::TimeDelta;
use freshet_rules::EventType;
use uuid::Uuid;

use crate::bank::sandbox::FaultKind;
use crate::model::webhooks::{AttemptOutcome, DeliveryStatus, Subscription, SubscriptionStatus};
use crate::model::{JobKind, JobStatus, UserSource};
use crate::services::banks::BankStatus;
use crate::services::journey::NewSession;
use crate::services::sandbox::{FaultSpec, Preset};
use crate::services::{Error, RefreshAnswer, RefreshCommand, Services};
use crate::store::JobSummary;

const USERS_PER_PAGE: u32 = 25;
const JOBS_PER_PAGE: u32 = 25;

/// How long a stashed secret waits for its one showing.
const STASH_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A secret waiting for its one showing: (partner, secret, until).
type Stashed = (String, String, std::time::Instant);

/// The portal's services over the use cases.
#[derive(Debug, Clone)]
pub struct Portal {
    services: Arc<Services>,
    /// Secrets made by a form post, kept (in memory only) until the page they are shown
    /// on reads them: the redirect's URL carries a token, never the secret.
    stash: Arc<std::sync::Mutex<std::collections::HashMap<String, Stashed>>>,
}

impl Portal {
    /// The portal's services, each area acting through `services`.
    pub fn services(services: Arc<Services>) -> PortalServices {
        let portal = Arc::new(Self {
            services,
            stash: Arc::default(),
        });
        PortalServices {
            users: Arc::clone(&portal) as Arc<dyn UserPages>,
            jobs: Arc::clone(&portal) as Arc<dyn JobPages>,
            webhooks: Arc::clone(&portal) as Arc<dyn WebhookPages>,
            keys: Arc::clone(&portal) as Arc<dyn KeyPages>,
            sandbox: portal as Arc<dyn SandboxPages>,
        }
    }
}

impl Portal {
    /// The signed-in user's partner.
    async fn partner(&self, viewer: &Viewer) -> Result<crate::model::Partner, ServiceError> {
        self.services
            .partner(partner_id(viewer)?)
            .await
            .map_err(told)?
            .ok_or(ServiceError::NotFound)
    }
}

/// A use case's failure, for the person who asked.
fn told(e: Error) -> ServiceError {
    match e {
        Error::UserNotFound
        | Error::AccountNotFound(_)
        | Error::JobNotFound
        | Error::SubscriptionNotFound
        | Error::DeliveryNotFound
        | Error::KeyNotFound => ServiceError::NotFound,
        Error::SandboxOff => ServiceError::Invalid(
            "The sandbox is off on this server (start it with --sandbox).".to_owned(),
        ),
        Error::NoSandboxBank => {
            ServiceError::Invalid("This server has no sandbox bank.".to_owned())
        }
        Error::Store(e) => ServiceError::Internal(e.to_string()),
        // Not the caller's mistake: a 500 whose page says to try again.
        Error::NotCommitted => ServiceError::Internal(Error::NotCommitted.to_string()),
        Error::Internal(e) => ServiceError::Internal(e),
        other => ServiceError::Invalid(other.to_string()),
    }
}

fn partner_id(viewer: &Viewer) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(&viewer.partner_id).map_err(|_| ServiceError::NotFound)
}

/// Another partner's id and a malformed one read the same: not found.
fn id(text: &str) -> Result<Uuid, ServiceError> {
    crate::model::canonical_id(text.trim()).ok_or(ServiceError::NotFound)
}

/// The user's accounts grouped by the consent that covers them, in the accounts' order.
fn connections(accounts: &[(crate::model::Account, i64)]) -> Vec<app::model::PortalConnection> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    let mut out: Vec<app::model::PortalConnection> = Vec::new();
    for (a, _) in accounts {
        let key = (a.bank_id.as_str(), a.bank_consent_id.as_str());
        let words = app::model::PortalAccount::type_words(&a.account_type).to_owned();
        match keys.iter().position(|k| *k == key) {
            Some(i) => out[i].accounts.push(words),
            None => {
                keys.push(key);
                out.push(app::model::PortalConnection {
                    bank_name: a.bank_name.clone(),
                    consent_status: a.consent_status,
                    consent_expires_at: a.consent_expires_at,
                    accounts: vec![words],
                });
            }
        }
    }
    out
}

fn job_state(status: JobStatus) -> JobState {
    match status {
        JobStatus::Queued => JobState::Queued,
        JobStatus::Running => JobState::Running,
        JobStatus::Succeeded => JobState::Succeeded,
        JobStatus::PartiallyFailed => JobState::PartiallyFailed,
        JobStatus::Failed => JobState::Failed,
    }
}

fn source(source: UserSource) -> UserSourceView {
    match source {
        UserSource::Direct => UserSourceView::Direct,
        UserSource::Marketplace => UserSourceView::Marketplace,
    }
}

fn delivery_state(text: &str) -> DeliveryState {
    match text {
        "SUCCEEDED" => DeliveryState::Succeeded,
        "FAILED" => DeliveryState::Failed,
        _ => DeliveryState::Pending,
    }
}

fn job_item(job: JobSummary) -> JobListItem {
    JobListItem {
        job_id: job.job_id.to_string(),
        user_id: job.user_id.to_string(),
        kind: match job.kind {
            JobKind::OnDemand => JobKindView::OnDemand,
            JobKind::Scheduled => JobKindView::Scheduled,
            JobKind::Initial => JobKindView::Initial,
        },
        status: job_state(job.status),
        created_at: job.created_at,
        finished_at: job.finished_at,
        accounts: job.accounts,
        done: job.done,
    }
}

fn progress(p: crate::services::JobProgress) -> JobProgress {
    JobProgress {
        job_id: p.job.job_id.to_string(),
        status: job_state(p.job.status),
        items: p
            .items
            .into_iter()
            .map(|it| ItemProgress {
                account_id: it.item.account_id,
                state: job_state(it.item.state),
                new_transactions: it.item.new_transactions,
                error_code: it.item.error_code,
                last_refresh: it.last_refresh,
                transaction_count: it.transaction_count,
            })
            .collect(),
    }
}

fn subscription_view(s: Subscription) -> SubscriptionView {
    SubscriptionView {
        id: s.subscription_id.to_string(),
        target_url: s.target_url,
        event_types: s
            .event_types
            .iter()
            .filter_map(|t| EventType::parse(t))
            .collect(),
        status: match s.status {
            SubscriptionStatus::Active => SubscriptionState::Active,
            SubscriptionStatus::Paused => SubscriptionState::Paused,
            SubscriptionStatus::Disabled => SubscriptionState::Disabled,
        },
        disabled_reason: s.disabled_reason,
        created_at: s.created_at,
    }
}

#[async_trait::async_trait]
impl UserPages for Portal {
    async fn users(
        &self,
        viewer: &Viewer,
        query: &str,
        page: u32,
    ) -> Result<UsersPage, ServiceError> {
        let page = page.max(1);
        let (rows, has_more) = self
            .services
            .users_page(
                partner_id(viewer)?,
                query,
                (page - 1) * USERS_PER_PAGE,
                USERS_PER_PAGE,
            )
            .await
            .map_err(told)?;
        Ok(UsersPage {
            items: rows
                .into_iter()
                .map(|u| UserListItem {
                    user_id: u.user.user_id.to_string(),
                    source: source(u.user.source),
                    external_reference: u.user.external_reference,
                    created_at: u.user.created_at,
                    accounts: u.accounts,
                    last_refresh: u.last_refresh,
                })
                .collect(),
            has_more,
            now: self.services.clock.now_for(partner_id(viewer)?),
        })
    }

    async fn user(&self, viewer: &Viewer, user_id: &str) -> Result<UserDetail, ServiceError> {
        let detail = self
            .services
            .user_detail(partner_id(viewer)?, id(user_id)?)
            .await
            .map_err(told)?;
        Ok(UserDetail {
            user_id: detail.user.user_id.to_string(),
            source: source(detail.user.source),
            external_reference: detail.user.external_reference,
            now: self.services.clock.now_for(partner_id(viewer)?),
            interval_seconds: self.services.policy.interval().num_seconds(),
            connections: connections(&detail.accounts),
            accounts: detail
                .accounts
                .into_iter()
                .map(|(a, transaction_count)| PortalAccount {
                    account_id: a.account_id.to_string(),
                    provider_name: a.provider_name,
                    account_type: a.account_type,
                    consent_status: a.consent_status,
                    consent_expires_at: a.consent_expires_at,
                    last_transaction_refresh_date: a.last_transaction_refresh_date,
                    in_flight_since: a.in_flight_since,
                    transaction_count,
                })
                .collect(),
            open_job: detail.open_job.map(progress),
            sandbox: self.services.sandbox,
        })
    }

    async fn banks(&self, _viewer: &Viewer) -> Result<Vec<app::model::BankView>, ServiceError> {
        let banks = self.services.banks().await.map_err(told)?;
        Ok(banks
            .into_iter()
            .map(|b| app::model::BankView {
                bank_id: b.bank_id,
                name: b.name,
                status: match b.status {
                    BankStatus::Available => "AVAILABLE",
                    BankStatus::Degraded => "DEGRADED",
                    BankStatus::Unavailable => "UNAVAILABLE",
                }
                .to_owned(),
            })
            .collect())
    }

    async fn connection_link(
        &self,
        viewer: &Viewer,
        user_id: &str,
        return_url: &str,
    ) -> Result<String, ServiceError> {
        let partner = self.partner(viewer).await?;
        let session = self
            .services
            .create_session(
                &partner,
                NewSession {
                    user_id: id(user_id)?,
                    partner_redirect_url: return_url.trim().to_owned(),
                    correlation_id: None,
                },
            )
            .await
            .map_err(told)?;
        session
            .connection_url
            .ok_or_else(|| ServiceError::Internal("a new session without its URL".to_owned()))
    }

    async fn refresh(&self, viewer: &Viewer, user_id: &str) -> Result<RefreshReply, ServiceError> {
        let partner = self.partner(viewer).await?;
        let answer = self
            .services
            .refresh(RefreshCommand {
                partner,
                user_id: id(user_id)?,
                idempotency: None,
            })
            .await;
        let outcome = match answer {
            Ok(RefreshAnswer::Decided(outcome)) => outcome,
            // Only a request with an Idempotency-Key is replayed; the portal sends none.
            Ok(RefreshAnswer::Replayed(_)) => {
                return Err(ServiceError::Internal("unexpected replay".to_owned()));
            }
            Err(e @ (Error::MarketplaceUser | Error::DirectNotEnabled)) => {
                return Ok(RefreshReply {
                    status: 403,
                    job_id: None,
                    accounts: Vec::new(),
                    next_refresh_available_at: None,
                    refused: Some(format!("Refused: {e}.")),
                });
            }
            Err(e) => return Err(told(e)),
        };
        Ok(RefreshReply {
            status: outcome.http_status(),
            job_id: outcome.job_id.map(|j| j.to_string()),
            accounts: outcome
                .accounts
                .into_iter()
                .map(|a| AccountOutcome {
                    account_id: a.account_id,
                    outcome: a.verdict.outcome(),
                    reason: a.verdict.reason(),
                })
                .collect(),
            next_refresh_available_at: outcome.next_refresh_available_at,
            refused: None,
        })
    }
}

#[async_trait::async_trait]
impl JobPages for Portal {
    async fn job_progress(
        &self,
        viewer: &Viewer,
        job_id: &str,
    ) -> Result<JobProgress, ServiceError> {
        self.services
            .job_progress(partner_id(viewer)?, id(job_id)?)
            .await
            .map(progress)
            .map_err(told)
    }

    async fn jobs(
        &self,
        viewer: &Viewer,
        page: u32,
        user_id: &str,
    ) -> Result<JobsPage, ServiceError> {
        let user = if user_id.trim().is_empty() {
            None
        } else {
            Some(id(user_id)?)
        };
        let page = page.max(1);
        let (rows, has_more) = self
            .services
            .jobs_page(
                partner_id(viewer)?,
                user,
                (page - 1) * JOBS_PER_PAGE,
                JOBS_PER_PAGE,
            )
            .await
            .map_err(told)?;
        Ok(JobsPage {
            items: rows.into_iter().map(job_item).collect(),
            has_more,
        })
    }

    async fn job(&self, viewer: &Viewer, job_id: &str) -> Result<JobDetail, ServiceError> {
        let detail = self
            .services
            .job_detail(partner_id(viewer)?, id(job_id)?)
            .await
            .map_err(told)?;
        Ok(JobDetail {
            job: job_item(detail.job),
            items: detail
                .items
                .into_iter()
                .map(|it| JobItemView {
                    account_id: it.account_id,
                    state: job_state(it.state),
                    attempts: it.attempts,
                    started_at: it.started_at,
                    finished_at: it.finished_at,
                    new_transactions: it.new_transactions,
                    error_code: it.error_code,
                })
                .collect(),
            events: detail
                .events
                .into_iter()
                .map(|e| JobEventView {
                    event_id: e.event.id,
                    event_type: e.event.event_type,
                    account_id: e.account_id,
                    created_at: e.event.created_at,
                    deliveries: e
                        .deliveries
                        .into_iter()
                        .map(|(sub, status, attempts)| (sub, delivery_state(&status), attempts))
                        .collect(),
                })
                .collect(),
        })
    }

    async fn operations(
        &self,
        viewer: &Viewer,
    ) -> Result<app::model::OperationsView, ServiceError> {
        let ops = self
            .services
            .operations(partner_id(viewer)?)
            .await
            .map_err(told)?;
        Ok(app::model::OperationsView {
            now: ops.now,
            hours: ops
                .hours
                .into_iter()
                .map(|h| app::model::OpsHour {
                    start: h.start,
                    fetches_succeeded: h.fetches_succeeded,
                    fetches_failed: h.fetches_failed,
                    webhooks_succeeded: h.webhooks_succeeded,
                    webhooks_failed: h.webhooks_failed,
                    webhook_p50_ms: h.webhook_p50_ms,
                    webhook_p95_ms: h.webhook_p95_ms,
                })
                .collect(),
            banks: ops
                .banks
                .into_iter()
                .map(|b| app::model::BankLatency {
                    bank_id: b.bank_id,
                    fetches: b.fetches,
                    failed: b.failed,
                    p50_ms: b.p50_ms,
                    p95_ms: b.p95_ms,
                })
                .collect(),
        })
    }
}

#[async_trait::async_trait]
impl WebhookPages for Portal {
    async fn subscriptions(&self, viewer: &Viewer) -> Result<Vec<SubscriptionView>, ServiceError> {
        let subs = self
            .services
            .subscriptions(partner_id(viewer)?)
            .await
            .map_err(told)?;
        Ok(subs.into_iter().map(subscription_view).collect())
    }

    async fn subscription(
        &self,
        viewer: &Viewer,
        sub: &str,
    ) -> Result<SubscriptionDetail, ServiceError> {
        let (partner, sub) = (partner_id(viewer)?, id(sub)?);
        let now = self.services.clock.now();
        let subscription = self
            .services
            .subscription(partner, sub)
            .await
            .map_err(told)?;
        let (attempts, _) = self
            .services
            .attempts(partner, sub, None, None, 100)
            .await
            .map_err(told)?;
        let chart = self
            .services
            .attempt_points(partner, sub, now - TimeDelta::hours(24))
            .await
            .map_err(told)?;
        Ok(SubscriptionDetail {
            subscription: subscription_view(subscription),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptView {
                    outcome: match a.outcome {
                        AttemptOutcome::InProgress => AttemptOutcomeView::InProgress,
                        AttemptOutcome::Succeeded => AttemptOutcomeView::Succeeded,
                        AttemptOutcome::Failed => AttemptOutcomeView::Failed,
                    },
                    delivery_status: match a.delivery_status {
                        DeliveryStatus::Pending => DeliveryState::Pending,
                        DeliveryStatus::Succeeded => DeliveryState::Succeeded,
                        DeliveryStatus::Failed => DeliveryState::Failed,
                    },
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
        let created = self
            .services
            .create_subscription(partner_id(viewer)?, target_url.trim(), event_types)
            .await
            .map_err(told)?;
        Ok((
            created.subscription.subscription_id.to_string(),
            created.secret,
        ))
    }

    async fn act(
        &self,
        viewer: &Viewer,
        sub: &str,
        action: SubscriptionAction,
    ) -> Result<Option<String>, ServiceError> {
        let (partner, sub) = (partner_id(viewer)?, id(sub)?);
        let paused = |paused| crate::services::webhooks::Change {
            paused: Some(paused),
            ..Default::default()
        };
        let s = &self.services;
        match action {
            SubscriptionAction::Pause => s
                .update_subscription(partner, sub, paused(true))
                .await
                .map(|_| None),
            SubscriptionAction::Resume => s
                .update_subscription(partner, sub, paused(false))
                .await
                .map(|_| None),
            SubscriptionAction::Test => s.send_test_event(partner, sub).await.map(|_| None),
            SubscriptionAction::Delete => s.delete_subscription(partner, sub).await.map(|()| None),
            SubscriptionAction::Rotate => {
                s.rotate_secret(partner, sub).await.map(|w| Some(w.secret))
            }
        }
        .map_err(told)
    }

    async fn redeliver(
        &self,
        viewer: &Viewer,
        sub: &str,
        event_id: &str,
    ) -> Result<(), ServiceError> {
        self.services
            .redeliver(partner_id(viewer)?, id(sub)?, event_id)
            .await
            .map_err(told)
    }

    async fn recover(&self, viewer: &Viewer, sub: &str, hours: u32) -> Result<u64, ServiceError> {
        let since =
            self.services.clock.now() - TimeDelta::hours(i64::from(hours.clamp(1, 24 * 30)));
        self.services
            .recover(partner_id(viewer)?, id(sub)?, since)
            .await
            .map_err(told)
    }
}

#[async_trait::async_trait]
impl KeyPages for Portal {
    async fn api_keys(&self, viewer: &Viewer) -> Result<Vec<ApiKeyView>, ServiceError> {
        let keys = self
            .services
            .api_keys(partner_id(viewer)?)
            .await
            .map_err(told)?;
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
        self.services
            .create_api_key(partner_id(viewer)?)
            .await
            .map_err(told)
    }

    async fn revoke_api_key(&self, viewer: &Viewer, key: &str) -> Result<(), ServiceError> {
        self.services
            .revoke_api_key(partner_id(viewer)?, key)
            .await
            .map_err(told)
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
}

#[async_trait::async_trait]
impl SandboxPages for Portal {
    async fn sandbox_user(&self, viewer: &Viewer, preset: &str) -> Result<String, ServiceError> {
        let partner = self.partner(viewer).await?;
        let preset = Preset::named(preset);
        let user = self
            .services
            .preset_user(&partner, preset, &format!("sandbox {}", preset.name()))
            .await
            .map_err(told)?;
        Ok(user.user_id.to_string())
    }

    async fn sandbox_fault(
        &self,
        viewer: &Viewer,
        kind: FaultChoice,
        latency_ms: u32,
    ) -> Result<(), ServiceError> {
        let kind = match kind {
            FaultChoice::None => None,
            FaultChoice::ServerError => Some(FaultKind::ServerError),
            FaultChoice::RateLimited => Some(FaultKind::RateLimited),
            FaultChoice::Timeout => Some(FaultKind::Hang),
            FaultChoice::ConsentRevoked => Some(FaultKind::ConsentRevoked),
        };
        // A fault replaces the bank's behaviour for the partner's accounts, latency included.
        self.services
            .set_fault(
                partner_id(viewer)?,
                FaultSpec {
                    kind,
                    latency_ms: (latency_ms > 0).then_some(u64::from(latency_ms)),
                    ..FaultSpec::default()
                },
            )
            .await
            .map_err(told)
    }

    async fn sandbox_shift_clock(&self, viewer: &Viewer, minutes: i64) -> Result<(), ServiceError> {
        self.services
            .shift_clock(partner_id(viewer)?, minutes)
            .map_err(told)
    }
}
