//! freshet's partner portal: the HTML shell, the router and the pages.
//!
//! Built twice: with `ssr` into the server (which renders the pages and answers the
//! server functions) and with `hydrate` into the browser's wasm. Islands mode: pages,
//! tables and navigation are plain server-rendered HTML; only `#[island]` components
//! (the live preview, ...) ship as wasm and hydrate, which keeps the download small.
//! The app never imports the server: server functions reach it through
//! [`services::PortalServices`] in context.

pub mod clock;
pub mod format;
pub mod model;
pub mod pages;
pub mod services;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

/// The document around every page; the server renders it, the browser hydrates `<body>`.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The portal: header and routes (rendered on the server).
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Stylesheet id="leptos" href="/pkg/freshet.css" />
        <Title text="freshet · partner portal" />
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"freshet"</a>
                <span class="tagline">"partner portal"</span>
            </header>
            <main>
                <Routes fallback=pages::NotFound>
                    // Async: the HTML is sent whole once the page's data is read, so every page
                    // reads complete without JavaScript (out-of-order streaming would send a
                    // loading placeholder and swap the content in with a script).
                    <Route path=StaticSegment("") view=pages::preview::PreviewPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
