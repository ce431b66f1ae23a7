//! A user's accounts with a live preview of what a refresh would do right now.
//!
//! The preview is `freshet_rules::preview`, the server's own decision, running in the
//! browser's wasm every second and on every edit: no server round-trip. The clock it
//! uses is the server's (the browser keeps the skew it saw at load), so the preview
//! never disagrees with the server because of a wrong laptop clock or a shifted
//! sandbox clock.

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::{
    AccountState, ConsentStatus, RefreshPolicy, SkipReason, Status, Verdict, format_countdown,
};
use leptos::prelude::*;

use crate::clock::current_time;
use crate::format::{exact, relative};
use crate::model::{PortalAccount, UserAccounts};
use crate::services::sample_user;

/// The demo user's accounts and the live preview.
#[component]
pub fn PreviewPage() -> impl IntoView {
    let user = Resource::new(|| (), |()| sample_user());
    view! {
        <Suspense fallback=|| {
            view! { <p class="panel loading" role="status">"Loading the user's accounts…"</p> }
        }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(user) => view! { <UserPreview user /> }.into_any(),
                    Err(_) => {
                        view! {
                            <p class="panel error" role="alert">
                                "The user's accounts could not be loaded. Reload the page to try again."
                            </p>
                        }
                            .into_any()
                    }
                }
            })}
        </Suspense>
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

/// Moves `now` on the server's timeline (browser clock + the skew seen at load). Four
/// ticks a second, so the countdown flips to "ready" within a quarter second of the
/// moment; the page re-renders only what changed (the countdown's text, once a second).
fn tick_every_second(now: RwSignal<DateTime<Utc>>) {
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

/// The interactive part of the page (an island): edits, the ticking clock and the preview.
/// Its root carries `data-hydrated`, `true` once the wasm has taken it over (tests wait
/// for it: a click before hydration is lost).
#[island]
fn UserPreview(user: UserAccounts) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| hydrated.set(true));
    let policy = RefreshPolicy::from_seconds(user.interval_seconds).unwrap_or_default();
    let now = RwSignal::new(user.now);
    let count = user.accounts.len();
    let accounts = RwSignal::new(user.accounts);
    tick_every_second(now);
    let preview = Memo::new(move |_| accounts.with(|a| evaluate_rows(a, now.get(), &policy)));

    let rows = (0..count)
        .map(|i| view! { <AccountRow i accounts now preview /> })
        .collect_view();
    let interval_minutes = policy.interval().num_minutes();

    view! {
        <section
            class="panel"
            aria-labelledby="user-heading"
            data-testid="user-preview"
            data-hydrated=move || if hydrated.get() { "true" } else { "false" }
        >
            <h1 id="user-heading">"User " <code>{user.user_id}</code></h1>
            <p class="hint">
                "Change an account's consent, last refresh or in-flight state: the preview below is the server's own rules, running in your browser. Interval: "
                {interval_minutes} " min."
            </p>
            <PreviewSummary preview />
            <div class="table-wrap">
                <table class="accounts">
                    <caption class="visually-hidden">"Connected accounts and what a refresh would do"</caption>
                    <thead>
                        <tr>
                            <th scope="col">"Account"</th>
                            <th scope="col">"Consent"</th>
                            <th scope="col">"Last refresh"</th>
                            <th scope="col">"Refreshing"</th>
                            <th scope="col">"If refreshed now"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}

fn announcement(status: Status) -> &'static str {
    match status {
        Status::Triggered => "A refresh now would trigger.",
        Status::Skipped => "A refresh now would be skipped.",
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
            <p class="visually-hidden" role="status">{move || announcement(preview.with(|p| p.status))}</p>
            <p class="summary-text" data-testid="preview-text">{move || preview.with(|p| p.summary.clone())}</p>
            {move || {
                preview
                    .with(|p| p.countdown)
                    .map(|secs| {
                        view! {
                            <p class="countdown" aria-label="Time until the next refresh is allowed">
                                <time data-testid="countdown" data-seconds=secs>{format_countdown(secs)}</time>
                                <span class="muted">" until ready"</span>
                            </p>
                        }
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
) -> impl IntoView {
    // Reads one field of this row's account, tracking the signal.
    let field = move |f: fn(&PortalAccount) -> Option<DateTime<Utc>>| {
        accounts.with(|a| a.get(i).and_then(f))
    };
    let read = move |f: fn(&PortalAccount) -> String| {
        accounts.with(|a| a.get(i).map(f).unwrap_or_default())
    };
    let update = move |f: Box<dyn FnOnce(&mut PortalAccount)>| {
        accounts.update(|a| {
            if let Some(account) = a.get_mut(i) {
                f(account);
            }
        });
    };
    let label = read(PortalAccount::label);

    let consent_value = move || match accounts.with(|a| a.get(i).map(|a| a.consent_status)) {
        Some(ConsentStatus::Expired) => "EXPIRED",
        _ => "ACTIVE",
    };
    let on_consent = move |ev| {
        let status = if event_target_value(&ev) == "EXPIRED" {
            ConsentStatus::Expired
        } else {
            ConsentStatus::Active
        };
        update(Box::new(move |s| s.consent_status = status));
    };
    let expiry = move || field(|a| a.consent_expires_at).map(|at| format!("until {}", exact(at)));

    let last_refresh = move || match field(|a| a.last_transaction_refresh_date) {
        Some(at) => relative(at, now.get()),
        None => "never".to_owned(),
    };
    let last_refresh_exact = move || {
        field(|a| a.last_transaction_refresh_date)
            .map(exact)
            .unwrap_or_default()
    };
    // The input edits "minutes ago"; the account keeps an absolute time, as the server does.
    let minutes_ago = move || {
        field(|a| a.last_transaction_refresh_date)
            .map(|at| (now.get_untracked() - at).num_minutes().to_string())
            .unwrap_or_default()
    };
    let on_minutes = move |ev| {
        let text = event_target_value(&ev);
        let at = text
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(TimeDelta::try_minutes)
            .map(|m| now.get_untracked() - m);
        update(Box::new(move |s| s.last_transaction_refresh_date = at));
    };
    let in_flight = move || field(|a| a.in_flight_since).is_some();
    let on_in_flight = move |ev| {
        let checked = event_target_checked(&ev);
        let at = checked.then(|| now.get_untracked());
        update(Box::new(move |s| s.in_flight_since = at));
    };

    let verdict = move || preview.with(|p| p.verdicts.get(i).copied());
    let outcome = move || match verdict() {
        Some((Verdict::Triggered, _)) => "TRIGGERED",
        Some((Verdict::Skipped(SkipReason::RateLimited), _)) => "RATE_LIMITED",
        _ => "ACCOUNT_EXPIRED",
    };
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

    let minutes_label = format!("Minutes since {label} was last refreshed (empty: never)");
    let consent_label = format!("Consent of {label}");
    let flight_label = format!("A refresh of {label} is in flight");
    view! {
        <tr data-testid=format!("account-row-{i}")>
            <th scope="row">
                <span class="provider">{label.clone()}</span>
                <code class="account-id">{read(|a| a.account_id.clone())}</code>
            </th>
            <td>
                <select aria-label=consent_label data-testid=format!("consent-{i}") prop:value=consent_value on:change=on_consent>
                    <option value="ACTIVE">"Active"</option>
                    <option value="EXPIRED">"Expired"</option>
                </select>
                <small class="muted">{expiry}</small>
            </td>
            <td>
                <span title=last_refresh_exact data-testid=format!("last-refresh-{i}")>{last_refresh}</span>
                <label class="minutes">
                    <input
                        type="number"
                        min="0"
                        step="1"
                        inputmode="numeric"
                        aria-label=minutes_label
                        data-testid=format!("minutes-ago-{i}")
                        prop:value=minutes_ago
                        on:input=on_minutes
                    />
                    " min ago"
                </label>
            </td>
            <td>
                <label class="in-flight">
                    <input
                        type="checkbox"
                        aria-label=flight_label
                        data-testid=format!("in-flight-{i}")
                        prop:checked=in_flight
                        on:change=on_in_flight
                    />
                    " in flight"
                </label>
            </td>
            <td>
                <span class="badge" data-testid=format!("outcome-{i}") data-outcome=outcome>{outcome_text}</span>
            </td>
        </tr>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn account(state: AccountState) -> PortalAccount {
        PortalAccount {
            account_id: state.account_id,
            provider_name: "Bank".into(),
            account_type: "CURRENT".into(),
            consent_status: state.consent_status,
            consent_expires_at: state.consent_expires_at,
            last_transaction_refresh_date: state.last_transaction_refresh_date,
            in_flight_since: state.in_flight_since,
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
