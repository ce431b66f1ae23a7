//! Users, their accounts and their transactions, as a partner reads them; and the user as
//! the portal's page shows it (accounts with their transaction counts, a refresh still open).

use uuid::Uuid;

use super::jobs::JobProgress;
use super::{Error, Services};
use crate::model::{Account, Partner, User, UserSource};
use crate::store::{TransactionFilter, TransactionPage, UserSummary};

/// One account of a user's page: the account, and the transactions stored for it.
pub type AccountWithCount = (Account, i64);

/// A user with everything the portal's user page shows.
#[derive(Clone, Debug)]
pub struct UserDetail {
    /// The user.
    pub user: User,
    /// The accounts, by id, with their transaction counts.
    pub accounts: Vec<AccountWithCount>,
    /// A refresh of this user still queued or running.
    pub open_job: Option<JobProgress>,
}

/// The longest external reference accepted.
const MAX_REFERENCE: usize = 255;

/// An `externalReference`: 1 to 255 characters (characters, as the API document counts
/// them, not bytes).
pub(super) fn check_reference(reference: Option<&str>) -> Result<(), Error> {
    if reference.is_some_and(|r| r.is_empty() || r.chars().count() > MAX_REFERENCE) {
        return Err(Error::Invalid(format!(
            "externalReference must be 1 to {MAX_REFERENCE} characters"
        )));
    }
    Ok(())
}

impl Services {
    /// Creates a user of the direct connection journey.
    pub async fn create_user(
        &self,
        partner: &Partner,
        external_reference: Option<&str>,
    ) -> Result<User, Error> {
        if !partner.direct_enabled {
            return Err(Error::DirectNotEnabled);
        }
        check_reference(external_reference)?;
        self.store
            .users()
            .create(
                partner.id,
                UserSource::Direct,
                external_reference,
                self.clock.now_for(partner.id),
                self.user_cap(),
            )
            .await?
            .ok_or_else(|| self.users_quota_reached())
    }

    /// One of the partner's users.
    pub async fn user(&self, partner: Uuid, user_id: Uuid) -> Result<User, Error> {
        self.store
            .users()
            .get(partner, user_id)
            .await?
            .ok_or(Error::UserNotFound)
    }

    /// Gives each account its bank's name (the store knows only the bank's id).
    pub(crate) fn name_banks(&self, accounts: &mut [Account]) {
        for a in accounts {
            if let Some(name) = self.bank_directory.name_of(&a.bank_id) {
                a.bank_name = name;
            }
        }
    }

    /// The user's connected accounts, by id, each consent's status as of now (`EXPIRED`
    /// once its end has passed).
    pub async fn accounts(&self, partner: Uuid, user_id: Uuid) -> Result<Vec<Account>, Error> {
        let now = self.clock.now_for(partner);
        let mut accounts = self
            .store
            .accounts()
            .of_user(partner, user_id)
            .await?
            .ok_or(Error::UserNotFound)?;
        for a in &mut accounts {
            a.consent_status =
                freshet_rules::consent_status_at(a.consent_status, a.consent_expires_at, now);
        }
        self.name_banks(&mut accounts);
        Ok(accounts)
    }

    /// A page of the user's transactions (of the accounts `filter` names, or all).
    pub async fn transactions(
        &self,
        partner: Uuid,
        user_id: Uuid,
        filter: &TransactionFilter,
    ) -> Result<TransactionPage, Error> {
        self.store
            .transactions()
            .page(partner, user_id, filter)
            .await?
            .ok_or(Error::UserNotFound)
    }

    /// A page of one account's transactions.
    pub async fn account_transactions(
        &self,
        partner: Uuid,
        user_id: Uuid,
        account_id: Uuid,
        filter: TransactionFilter,
    ) -> Result<TransactionPage, Error> {
        if !self
            .store
            .accounts()
            .is_users(partner, user_id, account_id)
            .await?
        {
            self.user(partner, user_id).await?;
            return Err(Error::AccountNotFound(
                "the accountId does not exist for this user",
            ));
        }
        let filter = TransactionFilter {
            account_ids: vec![account_id],
            ..filter
        };
        self.transactions(partner, user_id, &filter).await
    }

    /// A page of the partner's users whose id or reference contains `query`; whether more follow.
    pub async fn users_page(
        &self,
        partner: Uuid,
        query: &str,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<UserSummary>, bool), Error> {
        Ok(self
            .store
            .users()
            .page(partner, query, offset, limit)
            .await?)
    }

    /// The user with accounts, transaction counts and a refresh still open.
    pub async fn user_detail(&self, partner: Uuid, user_id: Uuid) -> Result<UserDetail, Error> {
        let user = self.user(partner, user_id).await?;
        let accounts = self.accounts(partner, user_id).await?;
        let counts = self.store.transactions().counts(user_id).await?;
        let open_job = match self.store.jobs().open_of(partner, user_id).await? {
            Some(job) => Some(self.job_progress(partner, job).await?),
            None => None,
        };
        Ok(UserDetail {
            user,
            accounts: accounts
                .into_iter()
                .map(|a| {
                    let id = a.account_id.to_string();
                    let count = counts
                        .iter()
                        .find(|(acc, _)| *acc == id)
                        .map_or(0, |(_, n)| *n);
                    (a, count)
                })
                .collect(),
            open_job,
        })
    }
}
