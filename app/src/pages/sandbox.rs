//! The sandbox (servers started with `--sandbox`): connect a user whose accounts are in
//! chosen states, make the bank misbehave, move the clock — so a demo can show every outcome.

use leptos::prelude::*;

use crate::services::{message, sandbox_fault, sandbox_shift_clock, sandbox_user};

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

#[island]
fn SandboxPanel() -> impl IntoView {
    let preset = RwSignal::new("mixed".to_owned());
    let fault = RwSignal::new("none".to_owned());
    let latency = RwSignal::new(0_u32);
    let note = RwSignal::new(None::<(bool, String, Option<String>)>);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let create = move |_| {
        leptos::task::spawn_local(async move {
            note.set(Some(match sandbox_user(preset.get_untracked()).await {
                Ok(id) => (true, "User created: ".to_owned(), Some(id)),
                Err(e) => (false, message(&e), None),
            }));
        });
    };
    let set_fault = move |_| {
        leptos::task::spawn_local(async move {
            note.set(Some(
                match sandbox_fault(fault.get_untracked(), latency.get_untracked()).await {
                    Ok(()) => (
                        true,
                        "The sandbox bank now behaves as chosen.".to_owned(),
                        None,
                    ),
                    Err(e) => (false, message(&e), None),
                },
            ));
        });
    };
    let shift = move |minutes: i64| {
        leptos::task::spawn_local(async move {
            note.set(
                Some(match sandbox_shift_clock(minutes).await {
                    Ok(()) => (
                        true,
                        format!("The server's clock moved {minutes} minutes forward."),
                    ),
                    Err(e) => (false, message(&e)),
                })
                .map(|(ok, text)| (ok, text, None)),
            );
        });
    };
    view! {
        <div class="stack" data-testid="sandbox" data-hydrated=move || hydrated.get().to_string()>
            <h2>"A user with accounts"</h2>
            <label>"Accounts "
                <select data-testid="preset" prop:value=move || preset.get() on:change=move |ev| preset.set(event_target_value(&ev))>
                    {PRESETS.iter().map(|(v, t)| view! { <option value=*v>{*t}</option> }).collect_view()}
                </select>
            </label>
            <button type="button" class="primary" on:click=create data-testid="create-user">"Create the user"</button>
            <h2>"The bank"</h2>
            <label>"Behaviour "
                <select data-testid="fault" prop:value=move || fault.get() on:change=move |ev| fault.set(event_target_value(&ev))>
                    {FAULTS.iter().map(|(v, t)| view! { <option value=*v>{*t}</option> }).collect_view()}
                </select>
            </label>
            <label>"Extra latency (ms) "
                <input type="number" min="0" max="30000" class="short" prop:value=move || latency.get().to_string()
                    on:input=move |ev| latency.set(event_target_value(&ev).parse().unwrap_or(0)) />
            </label>
            <button type="button" on:click=set_fault data-testid="set-fault">"Apply"</button>
            <h2>"The clock"</h2>
            <div class="actions">
                <button type="button" on:click=move |_| shift(5) data-testid="shift-5">"+5 min"</button>
                <button type="button" on:click=move |_| shift(20) data-testid="shift-20">"+20 min"</button>
                <button type="button" on:click=move |_| shift(360) data-testid="shift-360">"+6 h"</button>
            </div>
            {move || note.get().map(|(ok, text, user)| view! {
                <p role="status" class=if ok { "notice" } else { "error" } data-testid="sandbox-note">
                    {text}
                    {user.map(|id| view! { <a href=format!("/users/{id}") data-testid="new-user">{id.clone()}</a> })}
                </p>
            })}
        </div>
    }
}
