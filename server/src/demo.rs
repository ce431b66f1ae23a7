//! `freshet serve --demo`: on an empty database, a demo partner whose users connected their
//! banks the way production users do — through the connection journey, approving at the
//! in-process sandbox bank's authorization page as one of its personas — in states that show
//! every refresh outcome. Nothing is written around the journey: the first connections are
//! fetched, then the demo partner's (sandbox) clock moves 21 minutes on so that they are
//! stale, then the later ones connect (fresh), and some are unlinked from the management
//! page (expired).

use std::time::Duration;

use chrono::TimeDelta;
use uuid::Uuid;

use crate::bank::directory::SANDBOX;
use crate::model::Partner;
use crate::services::journey::NewSession;
use crate::services::sandbox::seed_error;
use crate::services::{Error, Services};
use crate::store::{CreatedPartner, StoreError};

/// What the demo created, to print.
#[derive(Debug)]
pub struct Demo {
    /// The demo partner and its API key.
    pub partner: CreatedPartner,
    /// (label, user id) of each demo user.
    pub users: Vec<(&'static str, Uuid)>,
    /// The portal's sign-in: (email, password), the password shown once.
    pub portal_user: (String, String),
}

/// The demo's portal sign-in email.
pub const DEMO_EMAIL: &str = "demo@freshet.example";

/// How far the demo partner's clock moves between the first connections and the later ones.
const STALE_BY: TimeDelta = TimeDelta::minutes(21);

/// One connection a demo user makes: the persona they sign in as at the sandbox bank, the
/// accounts they share, and when.
struct Connect {
    persona: &'static str,
    accounts: &'static [&'static str],
    when: When,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// Before the clock moves: stale by the time the demo is served.
    First,
    /// After: refreshed within the last 20 minutes.
    Later,
    /// Later, then unlinked by the user: the consent revoked, the accounts expired.
    Unlinked,
}

const BOTH: &[&str] = &["current", "savings"];

const USERS: [(&str, &[Connect]); 5] = [
    (
        "stale: refresh triggers both accounts",
        &[Connect {
            persona: "salaried",
            accounts: BOTH,
            when: When::First,
        }],
    ),
    (
        "fresh: rate-limited for about 20 minutes",
        &[Connect {
            persona: "gambler",
            accounts: BOTH,
            when: When::Later,
        }],
    ),
    (
        "expired: the user unlinked their bank",
        &[Connect {
            persona: "overdraft",
            accounts: BOTH,
            when: When::Unlinked,
        }],
    ),
    (
        "mixed: stale, fresh and expired (the stale one triggers the fresh one too)",
        &[
            Connect {
                persona: "returned-dd",
                accounts: &["current"],
                when: When::First,
            },
            Connect {
                persona: "multiple-loans",
                accounts: &["current"],
                when: When::Later,
            },
            Connect {
                persona: "savings",
                accounts: &["savings"],
                when: When::Unlinked,
            },
        ],
    ),
    ("none: no connected account", &[]),
];

/// Seeds the demo (through the journey's use cases, on a `--sandbox` server with its
/// engine running) when the database has no partner yet; `None` when it has one.
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
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| StoreError::Encoding(e.to_string()))?;
    let mut created = Vec::new();
    for (label, _) in USERS {
        let reference = label.split(':').next().unwrap_or(label);
        let user = services
            .create_user(&caller, Some(reference))
            .await
            .map_err(seed_error)?;
        created.push((label, user.user_id));
    }
    for phase in [When::First, When::Later, When::Unlinked] {
        for ((_, connects), (_, user)) in USERS.iter().zip(&created) {
            for connect in connects.iter().filter(|c| c.when == phase) {
                journey(services, &browser, &caller, *user, connect)
                    .await
                    .map_err(seed_error)?;
            }
        }
        if phase == When::First {
            // The first fetches land, then time passes (for this partner only).
            for (_, user) in &created {
                settled(services, caller.id, *user).await?;
            }
            services.clock.shift_of(caller.id, STALE_BY);
        }
    }
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

/// The user goes through the journey: opens the connection link, picks the sandbox bank,
/// signs in there as `connect.persona` and approves, comes back through freshet's callback;
/// an unlinking user then unlinks from the management page; the partner completes the
/// session.
async fn journey(
    services: &Services,
    browser: &reqwest::Client,
    partner: &Partner,
    user: Uuid,
    connect: &Connect,
) -> Result<(), Error> {
    let session = services
        .create_session(
            partner,
            NewSession {
                user_id: user,
                partner_redirect_url: format!("{}/sandbox/return", services.public_url()),
                correlation_id: Some("demo".to_owned()),
            },
        )
        .await?;
    let token = session
        .connection_url
        .as_deref()
        .and_then(|u| param(u, "partnerToken"))
        .ok_or_else(|| Error::Internal("a session without its link".to_owned()))?;
    let id = session.session_id;
    let journey = |e: crate::services::journey::JourneyError| Error::Internal(e.to_string());
    services
        .connection_page(id, &token)
        .await
        .map_err(journey)?;
    let at_bank = services
        .start_at_bank(id, &token, SANDBOX)
        .await
        .map_err(journey)?;
    // At the bank's authorization page: its form, as the user submits it.
    let url = url::Url::parse(&at_bank).map_err(|e| Error::Internal(e.to_string()))?;
    let mut form: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("persona".to_owned(), connect.persona.to_owned()));
    for account in connect.accounts {
        form.push(("accounts".to_owned(), (*account).to_owned()));
    }
    form.push(("decision".to_owned(), "approve".to_owned()));
    let mut action = url.clone();
    action.set_query(None);
    let decided = browser
        .post(action)
        .form(&form)
        .send()
        .await
        .map_err(|e| Error::Internal(format!("the sandbox bank: {e}")))?;
    let callback = decided
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| Error::Internal("the sandbox bank sent nobody back".to_owned()))?
        .to_owned();
    let (state, code) = (param(&callback, "state"), param(&callback, "code"));
    let back = services
        .callback(&state.unwrap_or_default(), code.as_deref(), None)
        .await
        .map_err(journey)?;
    if let Some(error) = param(&back, "error") {
        return Err(Error::Internal(format!(
            "the demo's connection failed: {error}"
        )));
    }
    if connect.when == When::Unlinked {
        // The consent just made (the bank's id for it travelled in the authorization URL).
        let consent = param(&at_bank, "consent_id")
            .ok_or_else(|| Error::Internal("no consent in the bank's URL".to_owned()))?;
        services
            .unlink(id, &token, SANDBOX, &consent)
            .await
            .map_err(journey)?;
    }
    let termination = param(&back, "sessionTerminationToken")
        .ok_or_else(|| Error::Internal("no termination token".to_owned()))?;
    services.complete_session(partner.id, &termination).await?;
    Ok(())
}

/// Waits (up to 30 s) until the user has no refresh queued or running.
async fn settled(services: &Services, partner: Uuid, user: Uuid) -> Result<(), StoreError> {
    for _ in 0..600 {
        if services
            .store
            .jobs()
            .open_of(partner, user)
            .await?
            .is_none()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(%user, "a demo user's first fetch had not ended after 30 s");
    Ok(())
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
