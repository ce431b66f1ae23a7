//! Webhooks: partners' subscriptions, signed at-least-once delivery from the event log with
//! retries, the attempt log, and the SSRF guard on targets. Contract: `shared/spec/api.md`,
//! Webhooks. The queue and the log live in the store (`store/webhooks.rs`); this module owns
//! the rules — how to sign (`signature`), when to retry (`schedule`), where a target may
//! point (`target`) — and the loop that sends (`deliver`).

pub mod deliver;
pub mod model;
pub mod schedule;
pub mod signature;
pub mod target;

pub use deliver::{Deliverer, DeliveryConfig};
pub use target::TargetPolicy;

/// How long the secret before a rotation keeps signing.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The payload of a test event.
pub fn test_event_payload() -> String {
    serde_json::json!({
        "message": "A test event from freshet: your endpoint received and can verify it.",
    })
    .to_string()
}
