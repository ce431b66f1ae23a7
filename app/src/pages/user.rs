//! A user's page: the accounts, what a refresh would do right now, the refresh button, and
//! each triggered account's fetch followed live to its end.
//!
//! The preview is `freshet_rules::preview`, the server's own decision, running in the
//! browser's wasm on the data the server decides on, re-evaluated four times a second on
//! the server's timeline (the browser keeps the skew it saw at load), so the countdown
//! flips to "ready" on time and the preview never disagrees with the server because of a
//! wrong laptop clock or a shifted sandbox clock.

use chrono::{DateTime, Utc};
use freshet_rules::{
    AccountState, Outcome, RefreshPolicy, SkipReason, Status, Verdict, format_countdown,
};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::{LoadError, Loading};
use crate::clock::current_time;
use crate::format::{exact, relative, renews_in};
use crate::model::{
    AccountOutcome, ItemProgress, JobProgress, JobState, Label, PortalAccount, PortalConnection,
    RefreshReply, UserDetail, UserSource,
};
use crate::services::{get_user, message, refresh_user};

/// `/users/{id}`.
#[component]
pub fn UserPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let user = Resource::new(id, get_user);
    // A connection link just made for this user, shown this once.
    let link_token = leptos_router::hooks::use_query_map().with_untracked(|q| q.get("link"));
    let revealed = Resource::new(move || link_token.clone(), super::webhooks::take_revealed);
    view! {
        <Suspense fallback=|| view! { <Loading what="the user's accounts" /> }>
            {move || Suspend::new(async move {
                let link = revealed.await;
                match user.await {
                    Ok(user) => {
                        let user_id = user.user_id.clone();
                        view! { <UserLive user /> <ConnectionLink user_id link /> }.into_any()
                    }
                    Err(e) => view! { <LoadError error=e what="user" /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// "Send a connection link": a plain form creating a session for the user (as
/// `POST /v1/sessions`); the page then shows its `connectionUrl` once.
#[component]
fn ConnectionLink(user_id: String, link: Option<String>) -> impl IntoView {
    let refused = leptos_router::hooks::use_query_map().with_untracked(|q| q.get("link_error"));
    let path = super::webhooks::action_path::<crate::services::SendConnectionLink>();
    view! {
        <section class="panel" aria-labelledby="link-heading">
            <h2 id="link-heading">"Connect a bank"</h2>
            <p class="muted">"A link for this user to connect their bank through the connection journey (valid 30 minutes); they come back to the address you give."</p>
            {link.map(|link| view! {
                <div class="secret" role="status" data-testid="connection-link">
                    <p>"Send this link to the user — it is shown once:"</p>
                    <code>{link}</code>
                </div>
            })}
            {refused.map(|why| view! { <p class="error" role="alert" data-testid="link-error">{why}</p> })}
            <form method="post" action=path class="actions">
                <super::CsrfField />
                <input type="hidden" name="user_id" value=user_id />
                <label>"Return the user to " <input type="url" name="return_url" required placeholder="https://your-app.example/connected" data-testid="return-url" /></label>
                <button type="submit" data-testid="send-link">"Create a connection link"</button>
            </form>
        </section>
    }
}

/// What the page shows of one evaluation; owned, so it can live in a `Memo`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PreviewView {
    status: Status,
    summary: String,
    countdown: Option<u64>,
    /// In the order of the page's rows.
    verdicts: Vec<(Verdict, Option<DateTime<Utc>>)>,
}

fn evaluate_rows(
    accounts: &[PortalAccount],
    now: DateTime<Utc>,
    policy: &RefreshPolicy,
) -> PreviewView {
    let states: Vec<AccountState> = accounts.iter().map(PortalAccount::rules_state).collect();
    let preview = freshet_rules::preview(&states, now, policy);
    let verdicts = accounts
        .iter()
        .map(|a| {
            preview
                .decision
                .accounts
                .iter()
                .find(|d| d.account_id == a.account_id)
                .map_or((Verdict::Skipped(SkipReason::AccountExpired), None), |d| {
                    (d.verdict, d.next_eligible_at)
                })
        })
        .collect();
    PreviewView {
        status: preview.decision.status,
        summary: preview.summary,
        countdown: preview.seconds_until_next_refresh,
        verdicts,
    }
}

fn outcome_code(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Triggered => "TRIGGERED",
        Verdict::Skipped(SkipReason::RateLimited) => "RATE_LIMITED",
        Verdict::Skipped(SkipReason::AccountExpired) => "ACCOUNT_EXPIRED",
    }
}

/// Moves `now` on the server's timeline (browser clock + the skew seen at load), four
/// times a second; the page re-renders only what changed.
fn tick(now: RwSignal<DateTime<Utc>>) {
    let skew = now.get_untracked() - current_time();
    Effect::new(move |_| {
        now.set(current_time() + skew);
        if let Ok(handle) = set_interval_with_handle(
            move || now.set(current_time() + skew),
            std::time::Duration::from_millis(250),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
}

/// The code of a server's answer for one account: `TRIGGERED`, or the skip's reason.
fn answer_code(a: &AccountOutcome) -> &'static str {
    match (a.outcome, a.reason) {
        (Outcome::Triggered, _) => "TRIGGERED",
        (Outcome::Skipped, Some(SkipReason::RateLimited)) => "RATE_LIMITED",
        (Outcome::Skipped, _) => "ACCOUNT_EXPIRED",
    }
}

/// Puts a job's news into the rows: item states, and the accounts' new refresh dates.
#[cfg(feature = "hydrate")]
fn apply(
    progress: JobProgress,
    job: RwSignal<Option<JobProgress>>,
    accounts: RwSignal<Vec<PortalAccount>>,
) {
    accounts.update(|list| {
        for item in &progress.items {
            if let Some(a) = list.iter_mut().find(|a| a.account_id == item.account_id) {
                if item.state.is_terminal() {
                    a.in_flight_since = None;
                }
                a.last_transaction_refresh_date = item.last_refresh;
                a.transaction_count = item.transaction_count;
            }
        }
    });
    job.set(Some(progress));
}

/// Follows a job until it ends. Each event of the partner's stream about the job's
/// accounts makes the page read the job once (no timer while events flow), and so does each
/// (re)connection of the stream, which catches what ended before it opened; the one step
/// without an event, QUEUED → RUNNING, is looked for once a second until no account of the
/// job is queued. The stream closes when the job ends or the island goes away.
#[cfg(feature = "hydrate")]
fn follow(
    job_id: String,
    job: RwSignal<Option<JobProgress>>,
    accounts: RwSignal<Vec<PortalAccount>>,
) {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use crate::model::LiveEvent;
    use crate::services::get_job_progress;
    use crate::stream::LiveStream;

    let done = Rc::new(Cell::new(false));
    let stream: Rc<RefCell<Option<LiveStream>>> = Rc::default();
    let poll: Rc<Cell<Option<leptos::prelude::IntervalHandle>>> = Rc::default();
    let fetch = {
        let (done, stream, poll, job_id) = (
            Rc::clone(&done),
            Rc::clone(&stream),
            Rc::clone(&poll),
            job_id.clone(),
        );
        Rc::new(move || {
            if done.get() {
                return;
            }
            let (done, stream, poll, job_id) = (
                Rc::clone(&done),
                Rc::clone(&stream),
                Rc::clone(&poll),
                job_id.clone(),
            );
            leptos::task::spawn_local(async move {
                let Ok(progress) = get_job_progress(job_id).await else {
                    return;
                };
                let ended = progress.status.is_terminal();
                let queued = progress.items.iter().any(|i| i.state == JobState::Queued);
                apply(progress, job, accounts);
                if ended {
                    done.set(true);
                    stream.borrow_mut().take();
                }
                if (ended || !queued)
                    && let Some(handle) = poll.take()
                {
                    handle.clear();
                }
            });
        })
    };
    let on_event = {
        let fetch = Rc::clone(&fetch);
        move |event: LiveEvent| {
            let ours = match &event.payload.job_id {
                Some(id) => *id == job_id,
                // Scheduled and initial jobs' events name no job: match the account.
                None => job.with_untracked(|j| {
                    j.as_ref().is_some_and(|j| {
                        j.items
                            .iter()
                            .any(|i| i.account_id == event.payload.account_id)
                    })
                }),
            };
            if ours {
                fetch();
            }
        }
    };
    let on_open = {
        let fetch = Rc::clone(&fetch);
        move || fetch()
    };
    *stream.borrow_mut() = LiveStream::open(on_event, on_open);
    let closer = send_wrapper::SendWrapper::new(Rc::clone(&stream));
    on_cleanup(move || {
        closer.borrow_mut().take();
    });
    let tick = Rc::clone(&fetch);
    poll.set(set_interval_with_handle(move || tick(), std::time::Duration::from_millis(1000)).ok());
    fetch();
}

#[cfg(not(feature = "hydrate"))]
fn follow(_: String, _: RwSignal<Option<JobProgress>>, _: RwSignal<Vec<PortalAccount>>) {}

/// The interactive part of the page (an island). Its root carries `data-hydrated`, `true`
/// once the wasm has taken it over (tests wait for it: a click before hydration is lost).
#[island]
fn UserLive(user: UserDetail) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    let policy = RefreshPolicy::from_seconds(user.interval_seconds).unwrap_or_default();
    let now = RwSignal::new(user.now);
    let count = user.accounts.len();
    let accounts = RwSignal::new(user.accounts);
    let job = RwSignal::new(user.open_job);
    let reply = RwSignal::new(None::<RefreshReply>);
    let busy = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);
    tick(now);
    // Effects run only in the browser, after hydration: follow a job already running.
    Effect::new(move |_| {
        hydrated.set(true);
        if let Some(open) = job.get_untracked() {
            follow(open.job_id, job, accounts);
        }
    });
    let preview = Memo::new(move |_| accounts.with(|a| evaluate_rows(a, now.get(), &policy)));
    let user_id = user.user_id.clone();
    let refresh = move |_| {
        let user_id = user_id.clone();
        busy.set(true);
        failure.set(None);
        leptos::task::spawn_local(async move {
            match refresh_user(user_id).await {
                Ok(answer) => {
                    if let Some(job_id) = answer.job_id.clone() {
                        let at = now.get_untracked();
                        let triggered: Vec<String> = answer
                            .accounts
                            .iter()
                            .filter(|a| a.outcome == Outcome::Triggered)
                            .map(|a| a.account_id.clone())
                            .collect();
                        accounts.update(|list| {
                            for a in list
                                .iter_mut()
                                .filter(|a| triggered.contains(&a.account_id))
                            {
                                a.in_flight_since = Some(at);
                            }
                        });
                        job.set(Some(JobProgress {
                            job_id: job_id.clone(),
                            status: JobState::Queued,
                            items: triggered
                                .into_iter()
                                .map(|account_id| ItemProgress {
                                    account_id,
                                    state: JobState::Queued,
                                    new_transactions: None,
                                    error_code: None,
                                    last_refresh: None,
                                    transaction_count: 0,
                                })
                                .collect(),
                        }));
                        follow(job_id, job, accounts);
                    }
                    reply.set(Some(answer));
                }
                Err(e) => failure.set(Some(message(&e))),
            }
            busy.set(false);
        });
    };
    let marketplace = user.source == UserSource::Marketplace;
    let connections = user.connections;
    let rows = (0..count)
        .map(|i| view! { <AccountRow i accounts now preview reply job /> })
        .collect_view();

    view! {
        <section
            class="panel"
            aria-labelledby="user-heading"
            data-testid="user-page"
            data-hydrated=move || if hydrated.get() { "true" } else { "false" }
        >
            <h1 id="user-heading">"User " <code data-testid="user-id">{user.user_id.clone()}</code></h1>
            <p class="muted">
                {if marketplace { "marketplace user" } else { "direct user" }}
                {user.external_reference.map(|r| format!(" · your reference {r}"))}
                " · refresh interval " {policy.interval().num_minutes()} " min · "
                <a href=format!("/jobs?user={}", user.user_id)>"jobs"</a>
            </p>
            {if count == 0 {
                view! { <p class="empty" data-testid="no-accounts">"This user has no connected accounts: a refresh would trigger nothing."</p> }.into_any()
            } else {
                view! { <PreviewSummary preview /> }.into_any()
            }}
            <div class="actions">
                <button
                    type="button"
                    class="primary"
                    data-testid="refresh"
                    disabled=move || busy.get() || marketplace
                    on:click=refresh
                >
                    {move || if busy.get() { "Refreshing…" } else { "Refresh now" }}
                </button>
                {marketplace.then(|| view! { <span class="muted">"Marketplace users are never refreshed on demand."</span> })}
            </div>
            <RefreshAnswer reply job failure />
            {(count > 0).then(|| view! {
                <div class="table-wrap">
                    <table class="accounts">
                        <caption class="visually-hidden">"Connected accounts, what a refresh would do, and how the last one went"</caption>
                        <thead>
                            <tr>
                                <th scope="col">"Account"</th>
                                <th scope="col">"Consent"</th>
                                <th scope="col">"Last refresh"</th>
                                <th scope="col">"Transactions"</th>
                                <th scope="col">"If refreshed now"</th>
                                <th scope="col">"Refresh"</th>
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            })}
            <Connections connections now />
        </section>
    }
    .into_any()
}

/// The user's consents: the bank, its accounts, and when the user must renew it — the
/// badge turning to "expired" on the server's timeline as the page ticks.
#[component]
fn Connections(connections: Vec<PortalConnection>, now: RwSignal<DateTime<Utc>>) -> impl IntoView {
    if connections.is_empty() {
        return ().into_any();
    }
    let rows = connections
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let expired = move || {
                freshet_rules::consent_status_at(c.consent_status, c.consent_expires_at, now.get())
                    == freshet_rules::ConsentStatus::Expired
            };
            let at = c.consent_expires_at;
            view! {
                <tr data-testid=format!("connection-{i}")>
                    <th scope="row">{c.bank_name}</th>
                    <td data-label="Accounts">{c.accounts.join(", ")}</td>
                    <td data-label="Consent">
                        <span class="badge" data-testid=format!("renews-{i}") data-expired=move || expired().to_string()>
                            {move || renews_in(expired(), at, now.get())}
                        </span>
                        " "
                        <small class="muted">{at.map(|at| format!("until {}", exact(at)))}</small>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h2 id="connections-heading">"Connections"</h2>
        <div class="table-wrap">
            <table class="connections" aria-labelledby="connections-heading">
                <thead>
                    <tr>
                        <th scope="col">"Bank"</th>
                        <th scope="col">"Accounts"</th>
                        <th scope="col">"Consent"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

/// The server's answer, and the job's progress bar.
#[component]
fn RefreshAnswer(
    reply: RwSignal<Option<RefreshReply>>,
    job: RwSignal<Option<JobProgress>>,
    failure: RwSignal<Option<String>>,
) -> impl IntoView {
    let answer = move || {
        reply.get().map(|r| {
            let triggered = r.accounts.iter().filter(|a| a.outcome == Outcome::Triggered).count();
            let text = match (&r.refused, r.status) {
                (Some(why), _) => why.clone(),
                (None, 201) => format!("Triggered {triggered} of {} accounts.", r.accounts.len()),
                (None, _) if r.accounts.is_empty() => "Nothing to refresh: no connected accounts.".to_owned(),
                (None, _) => match r.next_refresh_available_at {
                    Some(at) => format!("Nothing triggered. Next refresh possible at {}.", exact(at)),
                    None => "Nothing triggered: no account has a valid consent.".to_owned(),
                },
            };
            view! { <p class="answer" role="status" data-testid="refresh-answer" data-status=r.status>{text}</p> }
        })
    };
    let progress = move || {
        job.get().map(|j| {
            let total = j.items.len();
            let done = j.items.iter().filter(|i| i.state.is_terminal()).count();
            view! {
                <div class="progress" data-testid="job-progress" data-status=j.status.as_str()>
                    <label for="job-bar">
                        "Job " <a href=format!("/jobs/{}", j.job_id)><code>{j.job_id.clone()}</code></a>
                        ": " {done} " of " {total} " accounts done"
                    </label>
                    <progress id="job-bar" max=total value=done data-testid="progress-bar"></progress>
                </div>
            }
        })
    };
    view! {
        {move || failure.get().map(|f| view! { <p class="error" role="alert" data-testid="refresh-error">{f}</p> })}
        {answer}
        {progress}
    }
}

#[component]
fn PreviewSummary(preview: Memo<PreviewView>) -> impl IntoView {
    let status = move || match preview.with(|p| p.status) {
        Status::Triggered => "TRIGGERED",
        Status::Skipped => "SKIPPED",
    };
    view! {
        <div class="summary" data-testid="preview-summary" data-status=status>
            // Screen readers hear the outcome when it changes, not the countdown every second.
            <p class="visually-hidden" role="status">{move || match preview.with(|p| p.status) {
                Status::Triggered => "A refresh now would trigger.",
                Status::Skipped => "A refresh now would be skipped.",
            }}</p>
            <p class="summary-text" data-testid="preview-text">{move || preview.with(|p| p.summary.clone())}</p>
            {move || {
                preview.with(|p| p.countdown).map(|secs| view! {
                    <p class="countdown" aria-label="Time until the next refresh is allowed">
                        <time data-testid="countdown" data-seconds=secs>{format_countdown(secs)}</time>
                        <span class="muted">" until ready"</span>
                    </p>
                })
            }}
        </div>
    }
}

#[component]
fn AccountRow(
    i: usize,
    accounts: RwSignal<Vec<PortalAccount>>,
    now: RwSignal<DateTime<Utc>>,
    preview: Memo<PreviewView>,
    reply: RwSignal<Option<RefreshReply>>,
    job: RwSignal<Option<JobProgress>>,
) -> impl IntoView {
    let account = move || accounts.with(|a| a.get(i).cloned());
    let Some(first) = account() else {
        return ().into_any();
    };
    let id = first.account_id.clone();
    let consent = move || {
        account().map(|a| {
            // By the clock as it ticks: the badge turns when the consent ends.
            let status = match freshet_rules::consent_status_at(
                a.consent_status,
                a.consent_expires_at,
                now.get(),
            ) {
                freshet_rules::ConsentStatus::Active => "active",
                freshet_rules::ConsentStatus::Expired => "expired",
            };
            (
                status,
                a.consent_expires_at
                    .map(|at| format!("until {}", exact(at))),
            )
        })
    };
    let last = move || account().and_then(|a| a.last_transaction_refresh_date);
    let verdict = move || preview.with(|p| p.verdicts.get(i).copied());
    let outcome = move || verdict().map_or("ACCOUNT_EXPIRED", |(v, _)| outcome_code(v));
    let outcome_text = move || match verdict() {
        Some((Verdict::Triggered, _)) => "Triggered".to_owned(),
        Some((Verdict::Skipped(SkipReason::RateLimited), Some(at))) => {
            let secs = u64::try_from((at - now.get()).num_seconds()).unwrap_or(0);
            format!(
                "Skipped: rate-limited (eligible in {})",
                format_countdown(secs)
            )
        }
        Some((Verdict::Skipped(SkipReason::RateLimited), None)) => {
            "Skipped: rate-limited (consent ends first)".to_owned()
        }
        _ => "Skipped: account expired".to_owned(),
    };
    let server_outcome = {
        let id = id.clone();
        move || {
            reply.with(|r| {
                r.as_ref().and_then(|r| {
                    r.accounts
                        .iter()
                        .find(|a| a.account_id == id)
                        .map(answer_code)
                })
            })
        }
    };
    let item = {
        let id = id.clone();
        move || {
            job.with(|j| {
                j.as_ref()
                    .and_then(|j| j.items.iter().find(|it| it.account_id == id).cloned())
            })
        }
    };
    let live = move || {
        let outcome = server_outcome();
        match item() {
            Some(it) => {
                let text = match it.state {
                    JobState::Queued => "Queued".to_owned(),
                    JobState::Running => "Fetching…".to_owned(),
                    JobState::Succeeded => format!("Done: {} new transactions", it.new_transactions.unwrap_or(0)),
                    _ => format!("Failed: {}", reason(it.error_code.as_deref())),
                };
                view! { <span class="badge" data-state=it.state.as_str() data-testid=format!("live-{i}")>{text}</span> }.into_any()
            }
            None => match outcome {
                Some(o) => view! { <span class="badge" data-outcome=o data-testid=format!("server-outcome-{i}")>{outcome_words(o)}</span> }.into_any(),
                None => view! { <span class="muted">"—"</span> }.into_any(),
            },
        }
    };
    let server_code = {
        let id = id.clone();
        move || {
            reply
                .with(|r| {
                    r.as_ref().and_then(|r| {
                        r.accounts
                            .iter()
                            .find(|a| a.account_id == id)
                            .map(answer_code)
                    })
                })
                .unwrap_or_default()
        }
    };
    let label = first.label();
    view! {
        <tr data-testid=format!("account-row-{i}") data-account-id=id.clone() data-server-outcome=server_code>
            <th scope="row">
                <span class="provider">{label}</span>
                <code class="account-id">{id.clone()}</code>
            </th>
            <td data-label="Consent">
                {move || consent().map(|(s, until)| view! { <span data-testid=format!("consent-{i}")>{s}</span> <small class="muted">{until}</small> })}
            </td>
            <td data-label="Last refresh">
                <span
                    title=move || last().map(exact).unwrap_or_default()
                    data-testid=format!("last-refresh-{i}")
                >
                    {move || last().map_or_else(|| "never".to_owned(), |at| relative(at, now.get()))}
                </span>
            </td>
            <td data-label="Transactions" data-testid=format!("transactions-{i}")>{move || account().map_or(0, |a| a.transaction_count)}</td>
            <td data-label="If refreshed now">
                <span class="badge" data-testid=format!("outcome-{i}") data-outcome=outcome>{outcome_text}</span>
            </td>
            <td data-label="Refresh">{live}</td>
        </tr>
    }
    .into_any()
}

/// An outcome code in words (a table, not `to_lowercase`: its Unicode tables would weigh
/// on the wasm).
fn outcome_words(code: &str) -> &'static str {
    match code {
        "TRIGGERED" => "triggered",
        "RATE_LIMITED" => "skipped: rate-limited",
        _ => "skipped: account expired",
    }
}

/// What a failed fetch's code means, in words.
fn reason(code: Option<&str>) -> String {
    match code {
        Some("BANK_UNAVAILABLE") => "the bank is unavailable (BANK_UNAVAILABLE)".to_owned(),
        Some("BANK_TIMEOUT") => "the bank did not answer in time (BANK_TIMEOUT)".to_owned(),
        Some("BANK_RATE_LIMITED") => "the bank is rate-limiting us (BANK_RATE_LIMITED)".to_owned(),
        Some("CONSENT_REVOKED") => "the user revoked the consent (CONSENT_REVOKED)".to_owned(),
        Some("SANDBOX_QUOTA_EXCEEDED") => {
            "the sandbox partner holds as many transactions as it may (SANDBOX_QUOTA_EXCEEDED)"
                .to_owned()
        }
        Some(other) => other.to_owned(),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn account(state: AccountState) -> PortalAccount {
        PortalAccount {
            account_id: state.account_id,
            provider_name: "Bank".into(),
            account_type: "CURRENT".into(),
            consent_status: state.consent_status,
            consent_expires_at: state.consent_expires_at,
            last_transaction_refresh_date: state.last_transaction_refresh_date,
            in_flight_since: state.in_flight_since,
            transaction_count: 0,
        }
    }

    #[test]
    fn rows_keep_the_page_order_while_the_rules_sort_by_id() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let rows = vec![
            account(AccountState::active("z").refreshed_at(now - TimeDelta::minutes(5))),
            account(AccountState::expired("a")),
        ];
        let view = evaluate_rows(&rows, now, &RefreshPolicy::default());
        assert_eq!(view.status, Status::Skipped);
        assert_eq!(
            view.verdicts[0],
            (
                Verdict::Skipped(SkipReason::RateLimited),
                Some(now + TimeDelta::minutes(15))
            )
        );
        assert_eq!(
            view.verdicts[1].0,
            Verdict::Skipped(SkipReason::AccountExpired)
        );
        assert_eq!(view.countdown, Some(15 * 60));
    }
}
