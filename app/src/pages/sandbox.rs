//! The sandbox (servers started with `--sandbox`): connect a user whose accounts are in
//! chosen states, make the bank misbehave, move the clock — so a demo can show every outcome.

use leptos::prelude::*;

use leptos_router::hooks::use_query_map;

use super::CsrfField;
use super::webhooks::action_path;
use crate::services::{SandboxFault, SandboxShiftClock, SandboxUser};

/// `/sandbox`.
#[component]
pub fn SandboxPage() -> impl IntoView {
    view! {
        <section class="panel" aria-labelledby="sandbox-heading">
            <h1 id="sandbox-heading">"Sandbox"</h1>
            <p class="muted">"Only on a server started with " <code>"--sandbox"</code> ". Everything here acts on your organisation's sandbox data."</p>
            <SandboxPanel />
        </section>
    }
}

const PRESETS: [(&str, &str); 5] = [
    ("stale", "Stale: refreshed an hour ago (a refresh triggers)"),
    ("fresh", "Fresh: refreshed 5 minutes ago (rate-limited)"),
    ("expired", "Expired consents only"),
    ("mixed", "Mixed: stale, fresh and expired"),
    ("none", "No accounts"),
];

const FAULTS: [(&str, &str); 5] = [
    ("none", "Healthy"),
    ("server_error", "5xx errors"),
    ("rate_limited", "429 rate limiting"),
    ("timeout", "Timeouts"),
    ("consent_revoked", "Consent revoked"),
];

/// Three plain forms posting to the sandbox's server functions (no wasm): creating a user
/// goes on to its page; the others come back here and say what they did.
#[component]
fn SandboxPanel() -> impl IntoView {
    let query = use_query_map();
    let note = query.with_untracked(|q| match q.get("done").as_deref() {
        Some("fault") => Some("The sandbox bank now behaves as chosen.".to_owned()),
        Some("clock") => Some(format!(
            "Your sandbox clock moved {} minutes forward (other partners' time did not move).",
            q.get("minutes").unwrap_or_default()
        )),
        _ => None,
    });
    let (user_path, fault_path, clock_path) = (
        action_path::<SandboxUser>(),
        action_path::<SandboxFault>(),
        action_path::<SandboxShiftClock>(),
    );
    view! {
        <div class="stack" data-testid="sandbox">
            {note.map(|n| view! { <p role="status" class="notice" data-testid="sandbox-note">{n}</p> })}
            <h2>"A user with accounts"</h2>
            <form method="post" action=user_path class="stack">
                <CsrfField />
                <label>"Accounts "
                    <select name="preset" data-testid="preset">
                        {PRESETS.iter().map(|(v, t)| view! { <option value=*v selected=*v == "mixed">{*t}</option> }).collect_view()}
                    </select>
                </label>
                <button type="submit" class="primary" data-testid="create-user">"Create the user"</button>
            </form>
            <h2>"The bank"</h2>
            <form method="post" action=fault_path class="stack">
                <CsrfField />
                <label>"Behaviour "
                    <select name="kind" data-testid="fault">
                        {FAULTS.iter().map(|(v, t)| view! { <option value=*v>{*t}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Extra latency (ms) "
                    <input type="number" name="latency_ms" min="0" max="30000" value="0" class="short" />
                </label>
                <button type="submit" data-testid="set-fault">"Apply"</button>
            </form>
            <h2>"The clock"</h2>
            <div class="actions">
                {[(5, "+5 min"), (20, "+20 min"), (360, "+6 h")].into_iter().map(|(m, label)| view! {
                    <form method="post" action=clock_path>
                        <CsrfField />
                        <input type="hidden" name="minutes" value=m />
                        <button type="submit" data-testid=format!("shift-{m}")>{label}</button>
                    </form>
                }).collect_view()}
            </div>
        </div>
    }
}
