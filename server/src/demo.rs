//! `freshet serve --demo`: on an empty database, a demo partner with users whose accounts
//! show every refresh outcome, so that the API and the portal have something to show.

use crate::model::UserSource;
use crate::services::Services;
use crate::services::sandbox::{Preset, seed_error};
use crate::store::{CreatedPartner, StoreError};

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

const USERS: [(&str, Preset); 5] = [
    ("stale: refresh triggers both accounts", Preset::Stale),
    ("fresh: rate-limited for a few minutes", Preset::Fresh),
    ("expired: no valid consent", Preset::Expired),
    ("mixed: expired, fresh and never refreshed", Preset::Mixed),
    ("none: no connected account", Preset::None),
];

/// Seeds the demo (through the sandbox's use cases) when the database has no partner yet;
/// `None` when it has one.
pub async fn seed_if_empty(services: &Services) -> Result<Option<Demo>, StoreError> {
    let store = &services.store;
    let now = services.clock.now();
    if store.partners().any().await? {
        return Ok(None);
    }
    let partner = store.partners().create("Demo Lender", true, now).await?;
    let caller = services
        .partner(partner.partner_id)
        .await
        .map_err(seed_error)?
        .ok_or_else(|| StoreError::Encoding("the demo partner vanished".to_owned()))?;
    let mut created = Vec::new();
    for (label, preset) in USERS {
        let reference = label.split(':').next().unwrap_or(label);
        let user = services
            .preset_user(&caller, preset, reference)
            .await
            .map_err(seed_error)?;
        created.push((label, user.user_id));
    }
    let label = "marketplace: never refreshed on demand";
    let user = services
        .sandbox_user(caller.id, UserSource::Marketplace, Some("marketplace"))
        .await
        .map_err(seed_error)?;
    services
        .connect_accounts(
            caller.id,
            user.user_id,
            vec![Preset::marketplace_account(now)],
            false,
        )
        .await
        .map_err(seed_error)?;
    created.push((label, user.user_id));
    let mut bytes = [0_u8; 9];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store
        .portal_users()
        .create(partner.partner_id, DEMO_EMAIL, &password, now)
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
