//! The portal's server functions, and the trait through which they reach the server.
//! The server puts an `Arc<dyn PortalServices>` in Leptos context; the functions stay thin.

use leptos::prelude::*;

use crate::model::UserAccounts;

#[cfg(feature = "ssr")]
pub use ssr::*;

#[cfg(feature = "ssr")]
mod ssr {
    use std::sync::Arc;

    use crate::model::UserAccounts;

    /// What the portal needs from the server. Implemented in `server/`, placed in context.
    #[async_trait::async_trait]
    pub trait PortalServices: Send + Sync + 'static {
        /// The demo user shown on the preview page, read at the server's `now`.
        async fn sample_user(&self) -> Result<UserAccounts, ServiceError>;
    }

    /// The services as the server provides them in context.
    pub type Services = Arc<dyn PortalServices>;

    /// A failure on the server's side. Its message is logged by the server; the browser
    /// only learns that the call failed and shows a friendly text.
    #[derive(Debug)]
    pub struct ServiceError(pub String);

    impl std::fmt::Display for ServiceError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
}

/// Loads the demo user with the server's clock and interval.
#[server]
pub async fn sample_user() -> Result<UserAccounts, ServerFnError> {
    let services =
        use_context::<Services>().ok_or_else(|| ServerFnError::new("portal services missing"))?;
    services.sample_user().await.map_err(|e| {
        leptos::logging::error!("sample_user failed: {e}");
        ServerFnError::new("could not load the user")
    })
}
