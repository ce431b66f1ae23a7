//! A partner's API keys: list, create (shown once), revoke.

use uuid::Uuid;

use super::{Error, Services};
use crate::store::ApiKey;

impl Services {
    /// The partner's keys, newest first (never the keys themselves).
    pub async fn api_keys(&self, partner: Uuid) -> Result<Vec<ApiKey>, Error> {
        Ok(self.store.partners().keys(partner).await?)
    }

    /// A new key; the key itself is in this answer only.
    pub async fn create_api_key(&self, partner: Uuid) -> Result<String, Error> {
        Ok(self
            .store
            .partners()
            .create_key(partner, self.clock.now())
            .await?)
    }

    /// Revokes one of the partner's keys: it stops working at once.
    pub async fn revoke_api_key(&self, partner: Uuid, id: &str) -> Result<(), Error> {
        if self
            .store
            .partners()
            .revoke_key(partner, id, self.clock.now())
            .await?
        {
            // Cached keys would keep working until a restart otherwise.
            self.partners.forget_all();
            // Streams opened with it end.
            self.revoked_something();
            Ok(())
        } else {
            Err(Error::KeyNotFound)
        }
    }
}
