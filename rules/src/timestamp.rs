//! The wire form of instants: RFC 3339, UTC, milliseconds (`2026-11-26T12:00:05.123Z`).
//! Reading accepts any RFC 3339 offset (chrono's default); writing is always this form.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Formats an instant the way the API writes it: `2026-11-26T12:00:05.123Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(*at))
}

pub(crate) fn serialize_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, s),
        None => s.serialize_none(),
    }
}
