//! The browser's entry point: the wasm that takes the server-rendered portal over.
//! The hydration script that `HydrationScripts` writes into each page calls `hydrate()`.
// Leptos views are deeply nested types; hydrating them needs a deeper query limit.
#![recursion_limit = "256"]

/// Hydrates the server-rendered `<body>` with the portal's `App`.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
