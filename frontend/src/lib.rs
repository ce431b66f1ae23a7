//! The browser's entry point. The portal runs in islands mode: pages are rendered on the
//! server, and only the interactive parts (`#[island]` components of `app`) are
//! hydrated here. The script that `HydrationScripts` writes into each page calls
//! `hydrate()`, then each island's exported function.
// Leptos views are deeply nested types; hydrating them needs a deeper query limit.
#![recursion_limit = "256"]

// Links the islands' exported functions into this cdylib.
#[allow(unused_imports)]
use app::*;

/// Prepares the reactive runtime for the islands of the page.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // Readable panics in the console while developing; the release bundle goes without the
    // hook's formatting machinery (about 5 % of it).
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
