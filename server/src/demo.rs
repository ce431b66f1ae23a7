//! `freshet serve --demo`: on an empty database, a demo partner with users whose accounts
//! show every refresh outcome, so that the API and the portal have something to show.

use chrono::{DateTime, TimeDelta, Utc};
use freshet_rules::ConsentStatus;

use crate::model::UserSource;
use crate::sandbox::history;
use crate::store::{CreatedPartner, NewAccount, Store, StoreError};

/// What the demo created, to print.
#[derive(Debug)]
pub struct Demo {
    /// The demo partner and its API key.
    pub partner: CreatedPartner,
    /// (label, user id) of each demo user.
    pub users: Vec<(&'static str, uuid::Uuid)>,
    /// The portal's sign-in: (email, password), the password shown once.
    pub portal_user: (String, String),
}

/// The demo's portal sign-in email.
pub const DEMO_EMAIL: &str = "demo@freshet.example";

fn account(
    provider: &str,
    kind: &str,
    consent: ConsentStatus,
    last: Option<DateTime<Utc>>,
    seed: u64,
) -> NewAccount {
    NewAccount {
        provider_name: provider.to_owned(),
        account_type: kind.to_owned(),
        currency: "GBP".to_owned(),
        balance: "1250.00".to_owned(),
        consent_status: consent,
        consent_expires_at: None,
        last_transaction_refresh_date: last,
        persona: "salaried".to_owned(),
        history: last
            .map(|at| history("salaried", seed, 30, at))
            .unwrap_or_default(),
    }
}

/// The accounts of a user in one of the demo's states: `stale` (a refresh triggers every
/// account), `fresh` (rate-limited), `expired` (no valid consent), `mixed` (expired, fresh
/// and never refreshed), `none`; an unknown name is `none`.
pub fn preset(name: &str, now: DateTime<Utc>) -> Vec<NewAccount> {
    let ago = |minutes: i64| Some(now - TimeDelta::minutes(minutes));
    use ConsentStatus::{Active, Expired};
    match name {
        "stale" => vec![
            account("Monzo", "CURRENT", Active, ago(125), 1),
            account("Starling", "SAVINGS", Active, ago(5), 2),
        ],
        "fresh" => vec![
            account("Barclays", "CURRENT", Active, ago(3), 3),
            account("HSBC", "CREDIT_CARD", Active, ago(8), 4),
        ],
        "expired" => vec![account("Lloyds", "CURRENT", Expired, ago(3000), 5)],
        "mixed" => vec![
            account("NatWest", "CURRENT", Expired, ago(600), 6),
            account("Monzo", "SAVINGS", Active, ago(2), 7),
            account("Starling", "CURRENT", Active, None, 8),
        ],
        _ => Vec::new(),
    }
}

/// Seeds the demo when the database has no partner yet; `None` when it has one.
pub async fn seed_if_empty(store: &Store, now: DateTime<Utc>) -> Result<Option<Demo>, StoreError> {
    if store.has_partners().await? {
        return Ok(None);
    }
    let partner = store.create_partner("Demo Lender", true, now).await?;
    let users: Vec<(&'static str, UserSource, Vec<NewAccount>)> = vec![
        (
            "stale: refresh triggers both accounts",
            UserSource::Direct,
            preset("stale", now),
        ),
        (
            "fresh: rate-limited for a few minutes",
            UserSource::Direct,
            preset("fresh", now),
        ),
        (
            "expired: no valid consent",
            UserSource::Direct,
            preset("expired", now),
        ),
        (
            "mixed: expired, fresh and never refreshed",
            UserSource::Direct,
            preset("mixed", now),
        ),
        (
            "none: no connected account",
            UserSource::Direct,
            preset("none", now),
        ),
        (
            "marketplace: never refreshed on demand",
            UserSource::Marketplace,
            vec![account(
                "Barclays",
                "CURRENT",
                ConsentStatus::Active,
                Some(now - TimeDelta::minutes(300)),
                9,
            )],
        ),
    ];
    let mut created = Vec::new();
    for (label, source, accounts) in users {
        let user = store
            .create_user(
                partner.partner_id,
                source,
                Some(label.split(':').next().unwrap_or(label)),
                now,
            )
            .await?;
        if !accounts.is_empty() {
            store
                .connect_accounts(partner.partner_id, user.user_id, &accounts, false, now)
                .await?;
        }
        created.push((label, user.user_id));
    }
    let mut bytes = [0_u8; 9];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store
        .create_portal_user(partner.partner_id, DEMO_EMAIL, &password, now)
        .await
        .map_err(|e| match e {
            crate::store::PortalUserError::Store(e) => e,
            other => StoreError::Encoding(other.to_string()),
        })?;
    Ok(Some(Demo {
        partner,
        users: created,
        portal_user: (DEMO_EMAIL.to_owned(), password),
    }))
}
