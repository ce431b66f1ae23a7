//! Refresh jobs as partners and the portal read them: one job with its accounts, a page of
//! jobs, a job's timings with its events and their deliveries, and a job's progress with its
//! accounts' state now.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Error, Services};
use crate::model::Job;
use crate::store::{ItemTimings, JobEvent, JobSummary};

/// One account of a job in progress, with the account's state now.
#[derive(Clone, Debug)]
pub struct ItemProgress {
    /// The item.
    pub item: ItemTimings,
    /// The account's `lastTransactionRefreshDate` now.
    pub last_refresh: Option<DateTime<Utc>>,
    /// Transactions stored for the account now.
    pub transaction_count: i64,
}

/// Where a job is.
#[derive(Clone, Debug)]
pub struct JobProgress {
    /// The job.
    pub job: JobSummary,
    /// Its accounts.
    pub items: Vec<ItemProgress>,
}

/// A job with everything about it.
#[derive(Clone, Debug)]
pub struct JobDetail {
    /// The job.
    pub job: JobSummary,
    /// Its accounts, with timings.
    pub items: Vec<ItemTimings>,
    /// Its events, with their webhook deliveries.
    pub events: Vec<JobEvent>,
}

impl Services {
    /// A job of one of the partner's users, with its accounts.
    pub async fn job(&self, partner: Uuid, user_id: Uuid, job_id: Uuid) -> Result<Job, Error> {
        self.user(partner, user_id).await?;
        self.store
            .jobs()
            .get(partner, user_id, job_id)
            .await?
            .ok_or(Error::JobNotFound)
    }

    /// A page of the partner's jobs (of one user, when given), newest first; whether more follow.
    pub async fn jobs_page(
        &self,
        partner: Uuid,
        user: Option<Uuid>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<JobSummary>, bool), Error> {
        Ok(self.store.jobs().page(partner, user, offset, limit).await?)
    }

    /// A job with its accounts' timings and its events.
    pub async fn job_detail(&self, partner: Uuid, job_id: Uuid) -> Result<JobDetail, Error> {
        let job = self
            .store
            .jobs()
            .summary(partner, job_id)
            .await?
            .ok_or(Error::JobNotFound)?;
        Ok(JobDetail {
            items: self.store.jobs().items(job_id).await?,
            events: self.store.events().of_job(partner, job_id).await?,
            job,
        })
    }

    /// Where a job is, with its accounts' refresh dates and transaction counts now.
    pub async fn job_progress(&self, partner: Uuid, job_id: Uuid) -> Result<JobProgress, Error> {
        let job = self
            .store
            .jobs()
            .summary(partner, job_id)
            .await?
            .ok_or(Error::JobNotFound)?;
        let items = self.store.jobs().items(job_id).await?;
        let accounts = self.accounts(partner, job.user_id).await?;
        let counts = self.store.transactions().counts(job.user_id).await?;
        Ok(JobProgress {
            items: items
                .into_iter()
                .map(|item| ItemProgress {
                    last_refresh: accounts
                        .iter()
                        .find(|a| a.account_id.to_string() == item.account_id)
                        .and_then(|a| a.last_transaction_refresh_date),
                    transaction_count: counts
                        .iter()
                        .find(|(a, _)| *a == item.account_id)
                        .map_or(0, |(_, n)| *n),
                    item,
                })
                .collect(),
            job,
        })
    }
}
