//! The one place the portal reads the wall clock. The rules never do: they get `now`.

use chrono::{DateTime, Utc};

/// The current instant: `Date.now()` in the browser, the system clock on the server.
#[cfg(feature = "hydrate")]
pub fn current_time() -> DateTime<Utc> {
    #[allow(clippy::cast_possible_truncation)] // milliseconds since 1970 fit an i64 for ages
    let millis = js_sys::Date::now() as i64;
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// The current instant: `Date.now()` in the browser, the system clock on the server.
#[cfg(not(feature = "hydrate"))]
pub fn current_time() -> DateTime<Utc> {
    DateTime::from(std::time::SystemTime::now())
}
