//! The delivery loop: claims due deliveries (a lease, so a killed process loses nothing),
//! signs and POSTs each, and records every attempt. Concurrency is bounded overall, per
//! subscription and per partner, so a hung receiver — or one partner's many — holds at most
//! its own few slots for its 5-second timeout while everyone else's deliveries flow. `run_pending` is one whole round, for
//! tests; `spawn` runs continuously, woken by each commit that appends events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use chrono::TimeDelta;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use super::schedule;
use super::signature::{Secret, sign};
use super::target::{TargetError, TargetPolicy};
use crate::clock::Clock;
use crate::model::webhooks::ErrorKind;
use crate::random::random_unit;
use crate::store::webhooks::{AttemptRecord, ClaimQuota, ClaimedDelivery, InFlight};
use crate::store::{Store, StoreError};

/// How many times its shares a running deliverer claims ahead of what it sends.
const PREFETCH: usize = 4;

/// How deliveries are made.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryConfig {
    /// A receiver must answer within this (the contract: 5 s).
    pub timeout: Duration,
    /// How long a claim holds before another process may take the delivery (after a crash).
    pub lease: TimeDelta,
    /// Attempts in flight at once, in all.
    pub concurrency: usize,
    /// Attempts in flight at once, per subscription.
    pub per_subscription: usize,
    /// Attempts in flight at once, per partner: one partner's slow receivers hold at most
    /// this share of `concurrency`, whatever their number.
    pub per_partner: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            lease: TimeDelta::seconds(60),
            concurrency: 64,
            per_subscription: 8,
            per_partner: 16,
        }
    }
}

/// Sends webhook deliveries.
#[derive(Clone)]
pub struct Deliverer {
    store: Store,
    clock: Arc<Clock>,
    client: reqwest::Client,
    targets: TargetPolicy,
    config: DeliveryConfig,
    owner: String,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("owner", &self.owner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The body of a delivery: the event's envelope, with the subscription's id.
pub fn body(d: &ClaimedDelivery) -> String {
    crate::model::envelope(
        &d.event_type,
        &d.event_id,
        Some(&d.subscription_id),
        d.event_created_at,
        &d.payload,
    )
}

/// How a request ended, before the retry decision.
struct Answer {
    status_code: Option<u16>,
    latency: Duration,
    error_kind: Option<ErrorKind>,
    excerpt: Option<String>,
    retry_after: Option<Duration>,
}

const EXCERPT_BYTES: usize = 512;

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

fn caused_by_guard(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<TargetError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

impl Deliverer {
    /// A deliverer over `store`, sending where `targets` allows.
    pub fn new(
        store: Store,
        clock: Arc<Clock>,
        targets: TargetPolicy,
        config: DeliveryConfig,
    ) -> Result<Self, reqwest::Error> {
        Self::with_roots(store, clock, targets, config, Vec::new())
    }

    /// The same, also trusting `roots` (`--webhook-ca-file`: receivers behind a private CA)
    /// beside the public web PKI.
    pub fn with_roots(
        store: Store,
        clock: Arc<Clock>,
        targets: TargetPolicy,
        config: DeliveryConfig,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
        let client = builder
            // No system proxy (reqwest reads HTTPS_PROXY and friends by default): through a
            // proxy, the address guard in `dns_resolver` would vet the proxy, not the target.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .dns_resolver(Arc::new(targets.clone()))
            .user_agent(concat!("freshet-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(config.per_subscription)
            .build()?;
        Ok(Self {
            store,
            clock,
            client,
            targets,
            config,
            owner: format!("deliverer-{}", uuid::Uuid::new_v4()),
        })
    }

    /// One round: claims what is due (up to the concurrency), sends it all, records it all.
    /// Returns how many attempts it made.
    pub async fn run_pending(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let claimed = self
            .store
            .deliveries()
            .claim(
                &self.owner,
                now,
                now + self.config.lease,
                self.quota(self.config.concurrency, &InFlight::default()),
            )
            .await?;
        let n = claimed.len();
        let records =
            futures_util::future::join_all(claimed.into_iter().map(|d| self.attempt(d))).await;
        self.store
            .deliveries()
            .record(&self.owner, &records, self.clock.now())
            .await?;
        Ok(n)
    }

    /// Delivers continuously in the background.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run().await })
    }

    async fn run(self) {
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<AttemptRecord>();
        // Claimed and not yet recorded: up to PREFETCH times the shares, so that a claim (a
        // commit) serves many attempts; what is sent at once stays within the shares, held
        // by these semaphores.
        let mut in_flight = InFlight::default();
        let sending = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut per_subscription: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let mut per_partner: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let mut events = self.store.watch_events();
        loop {
            events.mark_unchanged();
            let free = (self.config.concurrency * PREFETCH).saturating_sub(in_flight.total());
            if free > 0 {
                let now = self.clock.now();
                match self
                    .store
                    .deliveries()
                    .claim(
                        &self.owner,
                        now,
                        now + self.config.lease,
                        ClaimQuota {
                            limit: free,
                            per_subscription: self.config.per_subscription * PREFETCH,
                            per_partner: self.config.per_partner * PREFETCH,
                            in_flight: &in_flight,
                        },
                    )
                    .await
                {
                    Ok(claimed) => {
                        for d in claimed {
                            in_flight.add(&d.subscription_id, &d.partner_id);
                            let share =
                                |map: &mut HashMap<String, Arc<Semaphore>>, key: &str, n: usize| {
                                    Arc::clone(
                                        map.entry(key.to_owned())
                                            .or_insert_with(|| Arc::new(Semaphore::new(n.max(1)))),
                                    )
                                };
                            let slots = [
                                share(
                                    &mut per_subscription,
                                    &d.subscription_id,
                                    self.config.per_subscription,
                                ),
                                share(&mut per_partner, &d.partner_id, self.config.per_partner),
                                Arc::clone(&sending),
                            ];
                            let me = self.clone();
                            let done_tx = done_tx.clone();
                            tokio::spawn(async move {
                                let mut held = Vec::with_capacity(slots.len());
                                for slot in slots {
                                    held.push(slot.acquire_owned().await);
                                }
                                let _ = done_tx.send(me.attempt(d).await);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming webhook deliveries failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            let mut records = Vec::new();
            tokio::select! {
                Some(record) = done.recv() => {
                    records.push(record);
                    while let Ok(record) = done.try_recv() {
                        records.push(record);
                    }
                }
                _ = events.changed() => {}
                () = self.store.deliveries_wanted() => {}
                // Retries come due with time alone; a second is their resolution.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if records.is_empty() {
                continue;
            }
            // If this fails the claims simply expire and the deliveries go out again:
            // at least once, never lost.
            if let Err(e) = self
                .store
                .deliveries()
                .record(&self.owner, &records, self.clock.now())
                .await
            {
                tracing::error!(error = %e, "recording webhook attempts failed; they will be retried");
            }
            for r in &records {
                in_flight.remove(&r.subscription_id, &r.partner_id);
            }
        }
    }

    /// A claim of at most `limit`, within the configured shares, given what is in flight.
    fn quota<'a>(&self, limit: usize, in_flight: &'a InFlight) -> ClaimQuota<'a> {
        ClaimQuota {
            limit,
            per_subscription: self.config.per_subscription,
            per_partner: self.config.per_partner,
            in_flight,
        }
    }

    /// One attempt of one delivery, and what follows from it.
    async fn attempt(&self, d: ClaimedDelivery) -> AttemptRecord {
        let answer = self.send(&d).await;
        let succeeded = answer.status_code.is_some_and(|c| (200..300).contains(&c));
        crate::ops::metrics::webhook_attempt(
            if succeeded { "SUCCEEDED" } else { "FAILED" },
            answer.error_kind.map_or("", ErrorKind::as_str),
            answer.latency,
        );
        let gone = answer.status_code == Some(410);
        let next_attempt_at = if succeeded || gone {
            None
        } else {
            schedule::next_delay(d.ladder_step, random_unit(), answer.retry_after)
                .and_then(|delay| TimeDelta::from_std(delay).ok())
                .map(|delay| self.clock.now() + delay)
        };
        AttemptRecord {
            subscription_id: d.subscription_id,
            partner_id: d.partner_id,
            event_id: d.event_id,
            attempt: d.attempt,
            succeeded,
            status_code: answer.status_code,
            latency_ms: u64::try_from(answer.latency.as_millis()).unwrap_or(u64::MAX),
            error_kind: answer.error_kind.map(ErrorKind::as_str),
            response_excerpt: answer.excerpt,
            next_attempt_at,
            gone,
        }
    }

    async fn send(&self, d: &ClaimedDelivery) -> Answer {
        let started = Instant::now();
        let failed = |kind: ErrorKind, excerpt: String| Answer {
            status_code: None,
            latency: started.elapsed(),
            error_kind: Some(kind),
            excerpt: Some(excerpt),
            retry_after: None,
        };
        // IP-literal hosts never reach the resolver: judge them here, at every attempt.
        let url = match self.targets.check_url(&d.target_url) {
            Ok(url) => url,
            Err(e) => return failed(ErrorKind::TargetForbidden, e.to_string()),
        };
        let body = body(d);
        let secrets: Vec<Secret> = d
            .secrets
            .iter()
            .filter_map(|s| Secret::parse(s).ok())
            .collect();
        // Receivers check webhook-timestamp against their own clock: the wall clock, even
        // when the sandbox has shifted ours.
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let signed = sign(
            &secrets.iter().collect::<Vec<_>>(),
            &d.event_id,
            timestamp,
            body.as_bytes(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in [
            ("x-event-id", d.event_id.clone()),
            (
                "x-event-timestamp",
                freshet_rules::format_timestamp(d.event_created_at),
            ),
            ("x-signature", signed.x_signature),
            ("webhook-id", d.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signed.webhook_signature),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let response = match self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) if caused_by_guard(&e) => {
                return failed(ErrorKind::TargetForbidden, format!("{e:#}"));
            }
            Err(e) if e.is_timeout() => return failed(ErrorKind::Timeout, format!("{e}")),
            Err(e) => return failed(ErrorKind::Connection, format!("{e}")),
        };
        let latency = started.elapsed();
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let excerpt = excerpt(response).await;
        Answer {
            status_code: Some(status.as_u16()),
            latency,
            error_kind: if status.is_success() {
                None
            } else if status.is_redirection() {
                Some(ErrorKind::Redirect)
            } else {
                Some(ErrorKind::HttpStatus)
            },
            excerpt,
            retry_after,
        }
    }
}

/// The start of the answer's body, without waiting for more than that.
async fn excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}
