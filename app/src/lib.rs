//! freshet's partner portal: the HTML shell, the router and the pages.
//!
//! Built twice: with `ssr` into the server (which renders the pages and answers the
//! server functions) and with `hydrate` into the browser's wasm. Islands mode: pages,
//! tables and navigation are plain server-rendered HTML; only `#[island]` components
//! (the live user page, the forms that show a secret once, ...) ship as wasm and hydrate,
//! which keeps the download small. The app never imports the server: server functions
//! reach it through the traits of [`services`] (one per area), in context.

pub mod clock;
pub mod format;
pub mod model;
pub mod pages;
pub mod services;
pub mod stream;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment, path};

/// Rewrites every `<time data-local>` in the reader's locale and time zone (the server
/// renders UTC, as it cannot know either). A few lines of script instead of wasm on
/// every page.
const LOCAL_TIMES: &str = "(function(){function f(){document.querySelectorAll('time[data-local]').forEach(function(t){var d=new Date(t.dateTime);if(!isNaN(d)){t.textContent=d.toLocaleString();t.removeAttribute('data-local');}});}f();new MutationObserver(f).observe(document.documentElement,{subtree:true,childList:true});})();";

/// The document around every page; the server renders it, the browser hydrates `<body>`.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
                <script nonce=leptos::nonce::use_nonce()>{LOCAL_TIMES}</script>
            </body>
        </html>
    }
}

/// Only this page's own scripts run (those carrying its nonce, and what they load: the
/// bundle and its wasm), only this site is spoken to, and no other site may frame it.
/// Set while the shell renders, before the first byte is sent.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The portal: header, navigation and routes (rendered on the server).
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let viewer = services::viewer();
    view! {
        <Stylesheet id="leptos" href="/pkg/freshet.css" />
        <Title text="freshet · partner portal" />
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"freshet"</a>
                <span class="tagline">"partner portal"</span>
                {viewer.map(|v| view! { <pages::Nav viewer=v /> })}
            </header>
            <main id="main">
                // Async: the HTML is sent whole once the page's data is read, so every page
                // reads complete without JavaScript (out-of-order streaming would send a
                // loading placeholder and swap the content in with a script).
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/sign-in") view=pages::sign_in::SignInPage />
                    <Route path=StaticSegment("") view=pages::users::UsersPage ssr=SsrMode::Async />
                    <Route path=path!("/users/:id") view=pages::user::UserPage ssr=SsrMode::Async />
                    <Route path=path!("/jobs") view=pages::jobs::JobsPage ssr=SsrMode::Async />
                    <Route path=path!("/jobs/:id") view=pages::jobs::JobPage ssr=SsrMode::Async />
                    <Route path=path!("/webhooks") view=pages::webhooks::WebhooksPage ssr=SsrMode::Async />
                    <Route path=path!("/webhooks/:id") view=pages::webhooks::SubscriptionPage ssr=SsrMode::Async />
                    <Route path=path!("/keys") view=pages::keys::KeysPage ssr=SsrMode::Async />
                    <Route path=path!("/banks") view=pages::banks::BanksPage ssr=SsrMode::Async />
                    <Route path=path!("/operations") view=pages::operations::OperationsPage ssr=SsrMode::Async />
                    <Route path=path!("/sandbox") view=pages::sandbox::SandboxPage />
                </Routes>
            </main>
        </Router>
    }
}
