//! The portal's pages, and the small pieces they share.

pub mod banks;
pub mod jobs;
pub mod keys;
pub mod operations;
pub mod sandbox;
pub mod sign_in;
pub mod user;
pub mod users;
pub mod webhooks;

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::format::exact;
use crate::model::Viewer;
use crate::services::{NOT_FOUND, message};

/// The page for unknown paths.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section class="panel">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. " <a href="/">"Back to the users"</a></p>
        </section>
    }
}

/// The navigation of a signed-in user, with sign-out.
#[component]
pub fn Nav(viewer: Viewer) -> impl IntoView {
    view! {
        <nav aria-label="Portal">
            <ul class="nav">
                <li><a href="/">"Users"</a></li>
                <li><a href="/jobs">"Jobs"</a></li>
                <li><a href="/webhooks">"Webhooks"</a></li>
                <li><a href="/banks">"Banks"</a></li>
                <li><a href="/operations">"Operations"</a></li>
                <li><a href="/keys">"API keys"</a></li>
                <li><a href="/sandbox">"Sandbox"</a></li>
            </ul>
        </nav>
        <form class="who" method="post" action="/auth/sign-out">
            <CsrfField />
            <span class="muted" data-testid="signed-in-as">{viewer.email} " · " {viewer.partner_name}</span>
            <button type="submit" class="link">"Sign out"</button>
        </form>
    }
}

/// The session's CSRF token, for every form that changes something: the server refuses a
/// form post of a session without it.
#[component]
pub fn CsrfField() -> impl IntoView {
    let token = crate::services::viewer()
        .map(|v| v.csrf)
        .unwrap_or_default();
    view! { <input type="hidden" name="csrf" value=token /> }
}

/// An instant: UTC in the HTML, the reader's locale once the page's script has run.
#[component]
pub fn Time(at: DateTime<Utc>) -> impl IntoView {
    view! { <time datetime=freshet_rules::format_timestamp(at) data-local="">{exact(at)}</time> }
}

/// "Loading …" while a page's data is read.
#[component]
pub fn Loading(what: &'static str) -> impl IntoView {
    view! { <p class="panel loading" role="status">"Loading " {what} "…"</p> }
}

/// A failed read, said plainly; "not found" gets its own words.
#[component]
pub fn LoadError(error: ServerFnError, what: &'static str) -> impl IntoView {
    let text = message(&error);
    if text == NOT_FOUND {
        view! {
            <section class="panel" data-testid="not-found">
                <h1>"Not found"</h1>
                <p>"This " {what} " does not exist for your organisation. " <a href="/">"Back to the users"</a></p>
            </section>
        }
        .into_any()
    } else {
        view! { <p class="panel error" role="alert">"The " {what} " could not be loaded: " {text}</p> }.into_any()
    }
}

/// A status as a coloured badge.
#[component]
pub fn StatusBadge(status: &'static str) -> impl IntoView {
    view! { <span class="badge" data-state=status>{status.replace('_', " ").to_lowercase()}</span> }
}
