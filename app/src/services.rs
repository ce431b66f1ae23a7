//! The portal's server functions, and the traits through which they reach the server, one
//! per area (users, jobs, webhooks, keys, sandbox). The server puts a [`Services`] (one trait
//! object per area) in Leptos context, and the signed-in
//! [`Viewer`] in each request's extensions (its session middleware); every function
//! checks that there is one and passes it on, so every call is scoped to that partner.

use leptos::prelude::*;

use crate::model::{
    ApiKeyView, BankView, FaultKind, JobDetail, JobProgress, JobsPage, OperationsView,
    RefreshReply, SubscriptionAction, SubscriptionDetail, SubscriptionView, UserDetail, UsersPage,
    Viewer,
};

#[cfg(feature = "ssr")]
pub use ssr::*;

#[cfg(feature = "ssr")]
mod ssr {
    use std::sync::Arc;

    use crate::model::{
        ApiKeyView, BankView, FaultKind, JobDetail, JobProgress, JobsPage, OperationsView,
        RefreshReply, SubscriptionAction, SubscriptionDetail, SubscriptionView, UserDetail,
        UsersPage, Viewer,
    };

    /// Users, their page, and refreshing them. Every method acts for `viewer`'s partner only
    /// (so do those of the other traits).
    #[async_trait::async_trait]
    pub trait UserPages: Send + Sync + 'static {
        /// A page of users whose id or reference contains `query`.
        async fn users(
            &self,
            viewer: &Viewer,
            query: &str,
            page: u32,
        ) -> Result<UsersPage, ServiceError>;
        /// One user with accounts, the server's clock and interval.
        async fn user(&self, viewer: &Viewer, user_id: &str) -> Result<UserDetail, ServiceError>;
        /// The on-demand refresh, exactly as `POST /v1/users/{userId}/accounts-refresh`.
        async fn refresh(
            &self,
            viewer: &Viewer,
            user_id: &str,
        ) -> Result<RefreshReply, ServiceError>;
        /// The banks users can connect, with their status (as `GET /v1/banks`).
        async fn banks(&self, viewer: &Viewer) -> Result<Vec<BankView>, ServiceError>;
        /// A connection session for the user (as `POST /v1/sessions`): its `connectionUrl`,
        /// the user coming back to `return_url`.
        async fn connection_link(
            &self,
            viewer: &Viewer,
            user_id: &str,
            return_url: &str,
        ) -> Result<String, ServiceError>;
    }

    /// Refresh jobs.
    #[async_trait::async_trait]
    pub trait JobPages: Send + Sync + 'static {
        /// Where a job is.
        async fn job_progress(
            &self,
            viewer: &Viewer,
            job_id: &str,
        ) -> Result<JobProgress, ServiceError>;
        /// A page of jobs.
        async fn jobs(
            &self,
            viewer: &Viewer,
            page: u32,
            user_id: &str,
        ) -> Result<JobsPage, ServiceError>;
        /// One job with its accounts, events and deliveries.
        async fn job(&self, viewer: &Viewer, job_id: &str) -> Result<JobDetail, ServiceError>;
        /// The last 24 hours of refreshes, bank latency and webhooks.
        async fn operations(&self, viewer: &Viewer) -> Result<OperationsView, ServiceError>;
    }

    /// Webhook subscriptions.
    #[async_trait::async_trait]
    pub trait WebhookPages: Send + Sync + 'static {
        /// The webhook subscriptions.
        async fn subscriptions(
            &self,
            viewer: &Viewer,
        ) -> Result<Vec<SubscriptionView>, ServiceError>;
        /// One subscription, its attempt log and its last 24 hours.
        async fn subscription(
            &self,
            viewer: &Viewer,
            id: &str,
        ) -> Result<SubscriptionDetail, ServiceError>;
        /// Subscribes; returns the id and the secret (shown once).
        async fn create_subscription(
            &self,
            viewer: &Viewer,
            target_url: &str,
            event_types: Vec<String>,
        ) -> Result<(String, String), ServiceError>;
        /// Acts on a subscription; rotating returns the new secret.
        async fn act(
            &self,
            viewer: &Viewer,
            id: &str,
            action: SubscriptionAction,
        ) -> Result<Option<String>, ServiceError>;
        /// Sends one event again.
        async fn redeliver(
            &self,
            viewer: &Viewer,
            id: &str,
            event_id: &str,
        ) -> Result<(), ServiceError>;
        /// Sends again every failed event of the last `hours`; how many.
        async fn recover(&self, viewer: &Viewer, id: &str, hours: u32)
        -> Result<u64, ServiceError>;
    }

    /// API keys, and the one showing of a new secret.
    #[async_trait::async_trait]
    pub trait KeyPages: Send + Sync + 'static {
        /// The API keys.
        async fn api_keys(&self, viewer: &Viewer) -> Result<Vec<ApiKeyView>, ServiceError>;
        /// A new API key (shown once).
        async fn create_api_key(&self, viewer: &Viewer) -> Result<String, ServiceError>;
        /// Revokes a key.
        async fn revoke_api_key(&self, viewer: &Viewer, id: &str) -> Result<(), ServiceError>;
        /// Keeps a secret for one showing to this viewer (for a few minutes); returns the
        /// token that the page it is shown on gets in its URL (never the secret itself).
        async fn stash_secret(
            &self,
            viewer: &Viewer,
            secret: String,
        ) -> Result<String, ServiceError>;
        /// The stashed secret, once.
        async fn take_secret(
            &self,
            viewer: &Viewer,
            token: &str,
        ) -> Result<Option<String>, ServiceError>;
    }

    /// The sandbox.
    #[async_trait::async_trait]
    pub trait SandboxPages: Send + Sync + 'static {
        /// A new user with accounts in the states of `preset`; returns the user id.
        async fn sandbox_user(&self, viewer: &Viewer, preset: &str)
        -> Result<String, ServiceError>;
        /// Makes the bank misbehave for the viewer's accounts, optionally slow.
        async fn sandbox_fault(
            &self,
            viewer: &Viewer,
            kind: FaultKind,
            latency_ms: u32,
        ) -> Result<(), ServiceError>;
        /// Moves the viewer's partner's sandbox clock by `minutes` (from where it is).
        async fn sandbox_shift_clock(
            &self,
            viewer: &Viewer,
            minutes: i64,
        ) -> Result<(), ServiceError>;
    }

    /// The services as the server provides them in context, one per area.
    #[derive(Clone)]
    pub struct Services {
        /// Users and refreshes.
        pub users: Arc<dyn UserPages>,
        /// Jobs.
        pub jobs: Arc<dyn JobPages>,
        /// Webhooks.
        pub webhooks: Arc<dyn WebhookPages>,
        /// API keys and secrets shown once.
        pub keys: Arc<dyn KeyPages>,
        /// The sandbox.
        pub sandbox: Arc<dyn SandboxPages>,
    }

    impl std::fmt::Debug for Services {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Services").finish_non_exhaustive()
        }
    }

    /// A failure on the server's side.
    #[derive(Debug)]
    pub enum ServiceError {
        /// Not there, or another partner's (the same to the caller).
        NotFound,
        /// The request was wrong; the text says how, for the person who made it.
        Invalid(String),
        /// Our fault; logged, never shown.
        Internal(String),
    }

    impl std::fmt::Display for ServiceError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::NotFound => f.write_str("not found"),
                Self::Invalid(m) | Self::Internal(m) => f.write_str(m),
            }
        }
    }

    /// The services and the signed-in user of this request.
    pub fn caller() -> Result<(Services, Viewer), leptos::prelude::ServerFnError> {
        use leptos::prelude::*;
        let services = use_context::<Services>()
            .ok_or_else(|| ServerFnError::new("portal services missing"))?;
        let viewer = use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Viewer>().cloned())
            .ok_or_else(|| ServerFnError::new(super::NOT_SIGNED_IN))?;
        Ok((services, viewer))
    }

    /// What the browser is told for each kind of failure, with its status: 404, 400 (the
    /// message says what to change), or 500 (ours; logged, never detailed).
    pub fn to_client(e: ServiceError) -> leptos::prelude::ServerFnError {
        let status = match &e {
            ServiceError::NotFound => http::StatusCode::NOT_FOUND,
            ServiceError::Invalid(_) => http::StatusCode::BAD_REQUEST,
            ServiceError::Internal(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
        match e {
            ServiceError::NotFound => leptos::prelude::ServerFnError::new(super::NOT_FOUND),
            ServiceError::Invalid(m) => leptos::prelude::ServerFnError::new(m),
            ServiceError::Internal(m) => {
                leptos::logging::error!("portal: {m}");
                leptos::prelude::ServerFnError::new(
                    "Something went wrong on our side. Try again in a moment.",
                )
            }
        }
    }
}

/// The error text of a missing (or another partner's) resource.
pub const NOT_FOUND: &str = "not found";
/// The error text of a call without a session.
pub const NOT_SIGNED_IN: &str = "Your session has ended. Sign in again.";

/// The signed-in user of the current request (server side; `None` in the browser).
pub fn viewer() -> Option<Viewer> {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Viewer>().cloned())
    }
    #[cfg(not(feature = "ssr"))]
    {
        None
    }
}

/// The message of a failed server call, fit to show.
pub fn message(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m.clone(),
        _ => "The server could not be reached. Check your connection and try again.".to_owned(),
    }
}

/// A page of users.
#[server]
pub async fn get_users(query: String, page: u32) -> Result<UsersPage, ServerFnError> {
    let (s, v) = caller()?;
    s.users.users(&v, &query, page).await.map_err(to_client)
}

/// One user.
// JSON, not a form: the live island calls it, and a cross-site page cannot send JSON
// without a CORS preflight, which this server never grants (see the session gate).
#[server(input = leptos::server_fn::codec::Json)]
pub async fn get_user(user_id: String) -> Result<UserDetail, ServerFnError> {
    let (s, v) = caller()?;
    s.users.user(&v, &user_id).await.map_err(to_client)
}

/// Refreshes a user's accounts.
// JSON, not a form: the live island calls it, and a cross-site page cannot send JSON
// without a CORS preflight, which this server never grants (see the session gate).
#[server(input = leptos::server_fn::codec::Json)]
pub async fn refresh_user(user_id: String) -> Result<RefreshReply, ServerFnError> {
    let (s, v) = caller()?;
    s.users.refresh(&v, &user_id).await.map_err(to_client)
}

/// Where a job is.
// JSON, not a form: the live island calls it, and a cross-site page cannot send JSON
// without a CORS preflight, which this server never grants (see the session gate).
#[server(input = leptos::server_fn::codec::Json)]
pub async fn get_job_progress(job_id: String) -> Result<JobProgress, ServerFnError> {
    let (s, v) = caller()?;
    s.jobs.job_progress(&v, &job_id).await.map_err(to_client)
}

/// A page of jobs; of one user when `user_id` is not empty.
#[server]
pub async fn get_jobs(page: u32, user_id: String) -> Result<JobsPage, ServerFnError> {
    let (s, v) = caller()?;
    s.jobs.jobs(&v, page, &user_id).await.map_err(to_client)
}

/// One job.
#[server]
pub async fn get_job(job_id: String) -> Result<JobDetail, ServerFnError> {
    let (s, v) = caller()?;
    s.jobs.job(&v, &job_id).await.map_err(to_client)
}

/// The webhook subscriptions.
#[server]
pub async fn subscriptions() -> Result<Vec<SubscriptionView>, ServerFnError> {
    let (s, v) = caller()?;
    s.webhooks.subscriptions(&v).await.map_err(to_client)
}

/// One subscription.
#[server]
pub async fn get_subscription(id: String) -> Result<SubscriptionDetail, ServerFnError> {
    let (s, v) = caller()?;
    s.webhooks.subscription(&v, &id).await.map_err(to_client)
}

#[cfg(feature = "ssr")]
fn encode(text: &str) -> String {
    crate::pages::users::encode(text)
}

/// The URL without a `user:password@` part: a refused target goes back into the form
/// through the address bar, where credentials must not be (history, logs, `Referer`).
#[cfg(any(feature = "ssr", test))]
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{tail}"),
        None => url.to_owned(),
    }
}

/// Subscribes a URL (a plain form: `target_url`, `event_types[i]`): on to the new
/// subscription's page, which shows the secret once; back to the form with the reason when
/// the server refuses.
#[server]
pub async fn create_subscription(
    target_url: String,
    #[server(default)] event_types: Vec<String>,
) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    match s
        .webhooks
        .create_subscription(&v, &target_url, event_types)
        .await
    {
        Ok((id, secret)) => {
            let token = s.keys.stash_secret(&v, secret).await.map_err(to_client)?;
            leptos_axum::redirect(&format!("/webhooks/{id}?reveal={token}"));
        }
        Err(e) => {
            let why = message(&to_client(e));
            leptos_axum::redirect(&format!(
                "/webhooks?error={}&url={}",
                encode(&why),
                encode(&without_credentials(&target_url))
            ));
        }
    }
    Ok(())
}

/// Pause, resume, test, delete, or rotate: a plain form. Back to the page (which shows a
/// rotated secret once), or to the list after a delete.
#[server]
pub async fn act_on_subscription(
    id: String,
    action: SubscriptionAction,
) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    let secret = s.webhooks.act(&v, &id, action).await.map_err(to_client)?;
    match (action, secret) {
        (SubscriptionAction::Delete, _) => leptos_axum::redirect("/webhooks"),
        (_, Some(secret)) => {
            let token = s.keys.stash_secret(&v, secret).await.map_err(to_client)?;
            leptos_axum::redirect(&format!("/webhooks/{id}?done=rotate&reveal={token}"));
        }
        (done, None) => leptos_axum::redirect(&format!("/webhooks/{id}?done={}", done.name())),
    }
    Ok(())
}

/// A secret stashed for this page, once.
#[server]
pub async fn reveal_secret(token: String) -> Result<Option<String>, ServerFnError> {
    let (s, v) = caller()?;
    s.keys.take_secret(&v, &token).await.map_err(to_client)
}

/// Sends one event again (a plain form; back to the subscription's page).
#[server]
pub async fn redeliver(id: String, event_id: String) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    s.webhooks
        .redeliver(&v, &id, &event_id)
        .await
        .map_err(to_client)?;
    leptos_axum::redirect(&format!("/webhooks/{id}?done=redeliver"));
    Ok(())
}

/// Sends again every failed event of the last `hours` (a plain form; back to the page,
/// which says how many).
#[server]
pub async fn recover(id: String, hours: u32) -> Result<u64, ServerFnError> {
    let (s, v) = caller()?;
    let n = s
        .webhooks
        .recover(&v, &id, hours)
        .await
        .map_err(to_client)?;
    leptos_axum::redirect(&format!("/webhooks/{id}?done=recover&recovered={n}"));
    Ok(n)
}

/// The last 24 hours of the partner's refreshes and webhooks.
#[server]
pub async fn operations() -> Result<OperationsView, ServerFnError> {
    let (s, v) = caller()?;
    s.jobs.operations(&v).await.map_err(to_client)
}

/// The banks users can connect.
#[server]
pub async fn banks() -> Result<Vec<BankView>, ServerFnError> {
    let (s, v) = caller()?;
    s.users.banks(&v).await.map_err(to_client)
}

/// A connection link for a user (a plain form: `user_id`, `return_url`): back to the user's
/// page, which shows the link once (it holds the session's secret).
#[server]
pub async fn send_connection_link(
    user_id: String,
    return_url: String,
) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    let path = format!("/users/{}", encode(&user_id));
    match s.users.connection_link(&v, &user_id, &return_url).await {
        Ok(link) => {
            let token = s.keys.stash_secret(&v, link).await.map_err(to_client)?;
            leptos_axum::redirect(&format!("{path}?link={token}"));
        }
        Err(e) => {
            let why = message(&to_client(e));
            leptos_axum::redirect(&format!("{path}?link_error={}", encode(&why)));
        }
    }
    Ok(())
}

/// The API keys.
#[server]
pub async fn api_keys() -> Result<Vec<ApiKeyView>, ServerFnError> {
    let (s, v) = caller()?;
    s.keys.api_keys(&v).await.map_err(to_client)
}

/// A new API key (a plain form): back to the keys, which show it once.
#[server]
pub async fn create_api_key() -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    let key = s.keys.create_api_key(&v).await.map_err(to_client)?;
    let token = s.keys.stash_secret(&v, key).await.map_err(to_client)?;
    leptos_axum::redirect(&format!("/keys?reveal={token}"));
    Ok(())
}

/// Revokes a key (a plain form; back to the keys).
#[server]
pub async fn revoke_api_key(id: String) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    s.keys.revoke_api_key(&v, &id).await.map_err(to_client)?;
    leptos_axum::redirect("/keys?done=revoked");
    Ok(())
}

/// Sandbox: a new user in a preset state (a plain form; on to the user's page).
#[server]
pub async fn sandbox_user(preset: String) -> Result<String, ServerFnError> {
    let (s, v) = caller()?;
    let id = s
        .sandbox
        .sandbox_user(&v, &preset)
        .await
        .map_err(to_client)?;
    leptos_axum::redirect(&format!("/users/{id}"));
    Ok(id)
}

/// Sandbox: bank faults (a plain form; back to the sandbox).
#[server]
pub async fn sandbox_fault(kind: FaultKind, latency_ms: u32) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    s.sandbox
        .sandbox_fault(&v, kind, latency_ms)
        .await
        .map_err(to_client)?;
    leptos_axum::redirect("/sandbox?done=fault");
    Ok(())
}

/// Sandbox: shift the clock (a plain form; back to the sandbox).
#[server]
pub async fn sandbox_shift_clock(minutes: i64) -> Result<(), ServerFnError> {
    let (s, v) = caller()?;
    s.sandbox
        .sandbox_shift_clock(&v, minutes)
        .await
        .map_err(to_client)?;
    leptos_axum::redirect(&format!("/sandbox?done=clock&minutes={minutes}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn a_refused_target_goes_back_without_its_credentials() {
        assert_eq!(
            without_credentials("https://user:p%40ss@hooks.example.com:8443/x?a=b@c#f"),
            "https://hooks.example.com:8443/x?a=b@c#f"
        );
        assert_eq!(
            without_credentials("https://a@b@hooks.example.com"),
            "https://hooks.example.com"
        );
        assert_eq!(
            without_credentials("https://hooks.example.com/p@th"),
            "https://hooks.example.com/p@th"
        );
        assert_eq!(without_credentials("not a url"), "not a url");
    }
}
