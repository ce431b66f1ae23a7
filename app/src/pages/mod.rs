//! The portal's pages, one module each.

pub mod preview;

use leptos::prelude::*;

/// Shown for any path the portal does not know.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section class="panel">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the portal"</a></p>
        </section>
    }
}
