//! Webhooks: partners' subscriptions, signed at-least-once delivery from the event log with
//! retries, the attempt log, and the SSRF guard on targets. Contract: `shared/spec/api.md`,
//! Webhooks. The queue and the log live in the store (`store/webhooks/`), the resources in
//! `model::webhooks`, the use cases in `services::webhooks`; this module owns
//! the rules — how to sign (`signature`), when to retry (`schedule`), where a target may
//! point (`target`) — and the loop that sends (`deliver`).

pub mod deliver;
pub mod schedule;
pub mod signature;
pub mod target;

pub use deliver::{Deliverer, DeliveryConfig};
pub use target::TargetPolicy;
