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
}

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

/// Seeds the demo when the database has no partner yet; `None` when it has one.
pub async fn seed_if_empty(store: &Store, now: DateTime<Utc>) -> Result<Option<Demo>, StoreError> {
    if store.has_partners().await? {
        return Ok(None);
    }
    let partner = store.create_partner("Demo Lender", true, now).await?;
    let ago = |minutes: i64| Some(now - TimeDelta::minutes(minutes));
    use ConsentStatus::{Active, Expired};
    let users: Vec<(&'static str, UserSource, Vec<NewAccount>)> = vec![
        (
            "stale: refresh triggers both accounts",
            UserSource::Direct,
            vec![
                account("Monzo", "CURRENT", Active, ago(125), 1),
                account("Starling", "SAVINGS", Active, ago(5), 2),
            ],
        ),
        (
            "fresh: rate-limited for a few minutes",
            UserSource::Direct,
            vec![
                account("Barclays", "CURRENT", Active, ago(3), 3),
                account("HSBC", "CREDIT_CARD", Active, ago(8), 4),
            ],
        ),
        (
            "expired: no valid consent",
            UserSource::Direct,
            vec![account("Lloyds", "CURRENT", Expired, ago(3000), 5)],
        ),
        (
            "mixed: expired, fresh and never refreshed",
            UserSource::Direct,
            vec![
                account("NatWest", "CURRENT", Expired, ago(600), 6),
                account("Monzo", "SAVINGS", Active, ago(2), 7),
                account("Starling", "CURRENT", Active, None, 8),
            ],
        ),
        ("none: no connected account", UserSource::Direct, vec![]),
        (
            "marketplace: never refreshed on demand",
            UserSource::Marketplace,
            vec![account("Barclays", "CURRENT", Active, ago(300), 9)],
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
    Ok(Some(Demo {
        partner,
        users: created,
    }))
}
