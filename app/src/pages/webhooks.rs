//! Webhook subscriptions: the list with a form to subscribe (the secret is shown once), and
//! a subscription's page — its controls, the attempt log with redelivery, recovery, and a
//! chart of the last 24 hours' latency and outcomes.

use chrono::{DateTime, TimeDelta, Utc};
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{CsrfField, LoadError, Loading, StatusBadge, Time};
use freshet_rules::EventType;

use crate::model::{ChartPoint, Label, SubscriptionAction, SubscriptionState};
use crate::services::{
    ActOnSubscription, CreateSubscription, Recover, Redeliver as RedeliverFn, get_subscription,
    reveal_secret, subscriptions,
};

/// `/webhooks`.
#[component]
pub fn WebhooksPage() -> impl IntoView {
    let list = Resource::new(|| (), |()| subscriptions());
    view! {
        <section class="panel" aria-labelledby="webhooks-heading">
            <h1 id="webhooks-heading">"Webhooks"</h1>
            <Suspense fallback=|| view! { <Loading what="subscriptions" /> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <LoadError error=e what="list of subscriptions" /> }.into_any(),
                        Ok(subs) if subs.is_empty() => view! { <p class="empty">"No subscription yet: add one below."</p> }.into_any(),
                        Ok(subs) => view! {
                            <div class="table-wrap"><table class="grid" data-testid="subscriptions">
                                <thead><tr><th scope="col">"Target"</th><th scope="col">"Events"</th><th scope="col">"Status"</th><th scope="col">"Created"</th></tr></thead>
                                <tbody>
                                    {subs.into_iter().map(|s| view! {
                                        <tr>
                                            <th scope="row"><a href=format!("/webhooks/{}", s.id)>{s.target_url}</a></th>
                                            <td>{s.event_types.len()} " type(s)"</td>
                                            <td><StatusBadge status=s.status.as_str() /></td>
                                            <td><Time at=s.created_at /></td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table></div>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
        <section class="panel" aria-labelledby="subscribe-heading">
            <h2 id="subscribe-heading">"Subscribe an endpoint"</h2>
            <Subscribe />
        </section>
    }
}

/// The subscribe form: a plain form posting to its server function, which goes on to the
/// new subscription (where the secret is shown once) or comes back with the reason.
#[component]
fn Subscribe() -> impl IntoView {
    let query = use_query_map();
    let (error, url) = query.with_untracked(|q| (q.get("error"), q.get("url").unwrap_or_default()));
    let path = action_path::<CreateSubscription>();
    view! {
        <form class="stack" method="post" action=path data-testid="subscribe-form">
            <CsrfField />
            {error.map(|e| view! { <p class="error" role="alert" data-testid="subscribe-error">{e}</p> })}
            <label>
                "Endpoint URL (https)"
                <input type="url" name="target_url" required placeholder="https://hooks.example.com/freshet"
                    data-testid="target-url" value=url />
            </label>
            <fieldset>
                <legend>"Events"</legend>
                {EventType::ALL.iter().enumerate().map(|(i, t)| view! {
                    <label class="check">
                        <input type="checkbox" name=format!("event_types[{i}]") value=t.as_str() checked=i < 2 />
                        " " <code>{t.as_str()}</code>
                    </label>
                }).collect_view()}
            </fieldset>
            <button type="submit" class="primary" data-testid="subscribe">"Subscribe"</button>
        </form>
    }
}

/// The secret stashed for this page by the action that made it (its token is in the URL), once.
pub async fn take_revealed(token: Option<String>) -> Option<String> {
    match token {
        Some(t) => reveal_secret(t).await.ok().flatten(),
        None => None,
    }
}

/// A secret, with what it is.
#[component]
pub fn Secret(secret: String, intro: &'static str) -> impl IntoView {
    view! {
        <div class="secret" role="status" data-testid="revealed-secret">
            <p>{intro}</p>
            <p><code class="select-all" data-testid="secret">{secret}</code></p>
        </div>
    }
}

/// `/webhooks/{id}`.
#[component]
pub fn SubscriptionPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let detail = Resource::new(id, get_subscription);
    let token = use_query_map().with_untracked(|q| q.get("reveal"));
    let revealed = Resource::new(move || token.clone(), take_revealed);
    view! {
        <Suspense fallback=|| view! { <Loading what="the subscription" /> }>
            {move || Suspend::new(async move {
                let secret = revealed.await;
                match detail.await {
                    Err(e) => view! { <LoadError error=e what="subscription" /> }.into_any(),
                    Ok(d) => {
                        let s = d.subscription;
                        let id = s.id.clone();
                        view! {
                            <section class="panel" aria-labelledby="sub-heading" data-testid="subscription-page">
                                <h1 id="sub-heading">"Subscription"</h1>
                                <p><code data-testid="subscription-target">{s.target_url.clone()}</code> " " <StatusBadge status=s.status.as_str() />
                                    {s.disabled_reason.map(|r| view! { <span class="muted">" (the receiver answered 410 Gone: " {r.to_lowercase()} ")"</span> })}</p>
                                <p class="muted">{s.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")}</p>
                                <Controls id=id.clone() status=s.status secret />
                            </section>
                            <section class="panel" aria-labelledby="chart-heading">
                                <h2 id="chart-heading">"Last 24 hours"</h2>
                                <Chart points=d.chart now=d.now />
                            </section>
                            <section class="panel" aria-labelledby="log-heading">
                                <h2 id="log-heading">"Attempt log"</h2>
                                {if d.attempts.is_empty() {
                                    view! { <p class="empty">"No delivery yet. Send a test event, or refresh a user."</p> }.into_any()
                                } else {
                                    view! {
                                        <div class="table-wrap"><table class="grid" data-testid="attempts">
                                            <thead><tr><th scope="col">"Event"</th><th scope="col">"Attempt"</th><th scope="col">"When"</th>
                                                <th scope="col">"Result"</th><th scope="col">"Latency"</th><th scope="col">"Next"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                                            <tbody>
                                                {d.attempts.into_iter().map(|a| {
                                                    let result = match (a.status_code, a.error_kind.clone()) {
                                                        (Some(code), _) => code.to_string(),
                                                        (None, Some(kind)) => kind.replace('_', " ").to_lowercase(),
                                                        (None, None) => "in progress".to_owned(),
                                                    };
                                                    let event_id = a.event_id.clone();
                                                    view! {
                                                        <tr data-testid="attempt" data-event-id=event_id data-outcome=a.outcome.as_str()>
                                                            <th scope="row"><code>{a.event_type}</code><code class="account-id">{a.event_id.clone()}</code></th>
                                                            <td>{a.attempt}</td>
                                                            <td><Time at=a.attempted_at /></td>
                                                            <td><span class="badge" data-state=a.outcome.as_str() data-testid="attempt-status" title=a.response_excerpt.unwrap_or_default()>{result}</span></td>
                                                            <td>{a.latency_ms.map(|l| format!("{l} ms"))}</td>
                                                            <td>{a.next_attempt_at.map(|at| view! { <Time at /> })}</td>
                                                            <td><Redeliver id=id.clone() event_id=a.event_id /></td>
                                                        </tr>
                                                    }
                                                }).collect_view()}
                                            </tbody>
                                        </table></div>
                                    }.into_any()
                                }}
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// Pause/resume, test, recover and delete are plain forms posting to their server
/// functions (no wasm; the server sends the browser back); rotating shows a secret, so it
/// is an island.
#[component]
fn Controls(id: String, status: SubscriptionState, secret: Option<String>) -> impl IntoView {
    let query = use_query_map();
    let rotated = query.with_untracked(|q| q.get("done").as_deref() == Some("rotate"));
    let intro = if rotated {
        "New signing secret — copy it now, it is not shown again. The old one keeps signing for 24 hours."
    } else {
        "Subscribed. Your signing secret — copy it now, it is not shown again:"
    };
    let note = query.with_untracked(|q| match q.get("done").as_deref() {
        Some("pause") => Some("Paused: events are kept until you resume.".to_owned()),
        Some("resume") => Some("Resumed: waiting deliveries go out now.".to_owned()),
        Some("test") => {
            Some("Test event queued: it appears in the log below in a moment.".to_owned())
        }
        Some("redeliver") => {
            Some("Queued again: the new attempt appears in the log below.".to_owned())
        }
        Some("recover") => Some(format!(
            "{} failed deliveries queued again.",
            q.get("recovered").unwrap_or_else(|| "0".to_owned())
        )),
        _ => None,
    });
    let paused = status != SubscriptionState::Active;
    let act = action_path::<ActOnSubscription>();
    let toggle = if paused {
        SubscriptionAction::Resume
    } else {
        SubscriptionAction::Pause
    };
    let recover_path = action_path::<Recover>();
    let hidden_id = id.clone();
    view! {
        <div class="actions" data-testid="controls">
            <form method="post" action=act>
                <CsrfField />
                <input type="hidden" name="id" value=hidden_id.clone() />
                <input type="hidden" name="action" value=toggle.name() />
                <button type="submit" data-testid="toggle-pause">{if paused { "Resume" } else { "Pause" }}</button>
            </form>
            <form method="post" action=act>
                <CsrfField />
                <input type="hidden" name="id" value=hidden_id.clone() />
                <input type="hidden" name="action" value=SubscriptionAction::Test.name() />
                <button type="submit" data-testid="send-test">"Send a test event"</button>
            </form>
            <form method="post" action=act>
                <CsrfField />
                <input type="hidden" name="id" value=hidden_id.clone() />
                <input type="hidden" name="action" value=SubscriptionAction::Rotate.name() />
                <button type="submit" data-testid="rotate">"Rotate the secret"</button>
            </form>
            <form method="post" action=recover_path class="inline-form">
                <CsrfField />
                <input type="hidden" name="id" value=hidden_id.clone() />
                <label class="inline">"Recover failures of the last "
                    <input type="number" name="hours" min="1" max="720" value="24" class="short" />
                    " h"</label>
                <button type="submit" data-testid="recover">"Recover"</button>
            </form>
            <form method="post" action=act>
                <CsrfField />
                <input type="hidden" name="id" value=hidden_id />
                <input type="hidden" name="action" value=SubscriptionAction::Delete.name() />
                <button type="submit" class="danger" data-testid="delete">"Delete"</button>
            </form>
        </div>
        {note.map(|n| view! { <p role="status" class="notice" data-testid="control-note">{n}</p> })}
        {secret.map(|s| view! { <Secret secret=s intro /> })}
    }
}

/// One event's "Send again" button: a plain form.
#[component]
fn Redeliver(id: String, event_id: String) -> impl IntoView {
    let path = action_path::<RedeliverFn>();
    view! {
        <form method="post" action=path>
            <CsrfField />
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="event_id" value=event_id />
            <button type="submit" class="small" data-testid="redeliver">"Send again"</button>
        </form>
    }
}

/// Where a plain form posts to call server function `F`.
pub fn action_path<F: leptos::server_fn::ServerFn>() -> &'static str {
    F::PATH
}

/// Latency of each attempt over the last 24 h (dots: green succeeded, red failed; failures
/// without an answer sit on the top edge), as a small inline SVG.
#[component]
fn Chart(points: Vec<ChartPoint>, now: DateTime<Utc>) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 140.0;
    let start = now - TimeDelta::hours(24);
    let max = points
        .iter()
        .filter_map(|p| p.latency_ms)
        .max()
        .unwrap_or(100)
        .max(10) as f64;
    let ok = points.iter().filter(|p| p.succeeded).count();
    let total = points.len();
    let x =
        move |at: DateTime<Utc>| ((at - start).num_seconds() as f64 / 86_400.0 * W).clamp(0.0, W);
    let summary =
        format!("{total} attempts in the last 24 hours, {ok} succeeded; slowest {max:.0} ms.");
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=summary.clone() preserveAspectRatio="none" data-testid="chart">
                <line x1="0" y1=H x2=W y2=H class="axis" />
                {points.into_iter().map(|p| {
                    let y = p.latency_ms.map_or(4.0, |l| H - (l as f64 / max) * (H - 8.0));
                    view! { <circle cx=x(p.at) cy=y r="3" class=if p.succeeded { "dot ok" } else { "dot bad" } /> }
                }).collect_view()}
            </svg>
            <figcaption class="muted">{summary} " Time runs left to right over 24 h; height is latency."</figcaption>
        </figure>
    }
}
