//! A partner's last 24 hours, for the portal's operations page: refreshes (account fetches)
//! by outcome per hour, each bank's fetch latency, webhook attempts by outcome and latency
//! per hour. The partner's own data only.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{Error, Services};
use crate::model::from_ms;
use crate::store::PartnerDay;

/// One hour of the day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hour {
    /// When the hour starts.
    pub start: DateTime<Utc>,
    /// Account fetches that ended with data.
    pub fetches_succeeded: u32,
    /// Account fetches that failed.
    pub fetches_failed: u32,
    /// Webhook attempts the receiver acknowledged.
    pub webhooks_succeeded: u32,
    /// Webhook attempts that failed (an error answer, a timeout, no connection).
    pub webhooks_failed: u32,
    /// The median latency of the hour's answered attempts, in milliseconds.
    pub webhook_p50_ms: Option<i64>,
    /// Their 95th percentile.
    pub webhook_p95_ms: Option<i64>,
}

/// One bank's day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankDay {
    /// The bank.
    pub bank_id: String,
    /// Fetches that ended.
    pub fetches: u32,
    /// Of them, failed.
    pub failed: u32,
    /// Median fetch time (transactions with retries, and balance), in milliseconds.
    pub p50_ms: Option<i64>,
    /// Its 95th percentile.
    pub p95_ms: Option<i64>,
}

/// The last 24 hours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operations {
    /// The server's now (the day ends here).
    pub now: DateTime<Utc>,
    /// 24 hours, oldest first; the last one ends now.
    pub hours: Vec<Hour>,
    /// The banks fetched from, by id.
    pub banks: Vec<BankDay>,
}

/// The `q`-quantile (0..=1) of `values`, nearest rank; none of nothing.
fn quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )] // a rank within the slice
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// The day's rows as hours and banks; the last hour ends at `now`.
fn summarize(day: PartnerDay, now: DateTime<Utc>) -> Operations {
    let start = now - TimeDelta::hours(24);
    let index = |at: DateTime<Utc>| {
        // Euclidean: a minute before the start is hour -1 (out), not hour 0.
        usize::try_from((at - start).num_minutes().div_euclid(60))
            .ok()
            .filter(|i| *i < 24)
    };
    let mut hours: Vec<Hour> = (0..24)
        .map(|i| Hour {
            start: start + TimeDelta::hours(i),
            ..Hour::default()
        })
        .collect();
    let mut latencies: Vec<Vec<i64>> = vec![Vec::new(); 24];
    for fetch in &day.fetches {
        if let Some(i) = index(from_ms(fetch.finished_ms)) {
            if fetch.state == "SUCCEEDED" {
                hours[i].fetches_succeeded += 1;
            } else {
                hours[i].fetches_failed += 1;
            }
        }
    }
    for attempt in &day.attempts {
        if let Some(i) = index(from_ms(attempt.started_ms)) {
            if attempt.succeeded {
                hours[i].webhooks_succeeded += 1;
            } else {
                hours[i].webhooks_failed += 1;
            }
            latencies[i].extend(attempt.latency_ms);
        }
    }
    for (hour, mut l) in hours.iter_mut().zip(latencies) {
        hour.webhook_p50_ms = quantile(&mut l, 0.5);
        hour.webhook_p95_ms = quantile(&mut l, 0.95);
    }
    let mut bank_ids: Vec<&str> = day.fetches.iter().map(|f| f.bank_id.as_str()).collect();
    bank_ids.sort_unstable();
    bank_ids.dedup();
    let banks = bank_ids
        .into_iter()
        .map(|bank| {
            let of_bank = day.fetches.iter().filter(|f| f.bank_id == bank);
            let mut durations: Vec<i64> = of_bank.clone().filter_map(|f| f.duration_ms).collect();
            BankDay {
                bank_id: bank.to_owned(),
                fetches: u32::try_from(of_bank.clone().count()).unwrap_or(u32::MAX),
                failed: u32::try_from(of_bank.filter(|f| f.state == "FAILED").count())
                    .unwrap_or(u32::MAX),
                p50_ms: quantile(&mut durations, 0.5),
                p95_ms: quantile(&mut durations, 0.95),
            }
        })
        .collect();
    Operations { now, hours, banks }
}

impl Services {
    /// The partner's last 24 hours of refreshes and webhooks (on the server's clock, which
    /// stamps fetches and attempts).
    pub async fn operations(&self, partner: Uuid) -> Result<Operations, Error> {
        let now = self.clock.now();
        let day = self
            .store
            .partner_day(partner, now - TimeDelta::hours(24))
            .await?;
        Ok(summarize(day, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::to_ms;
    use crate::store::{EndedAttempt, EndedFetch};

    #[test]
    fn quantiles_are_nearest_rank() {
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [7], 0.95), Some(7));
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50));
        assert_eq!(quantile(&mut v, 0.95), Some(95));
    }

    #[test]
    fn rows_fall_into_their_hour_and_bank() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |minutes_ago: i64| to_ms(now - TimeDelta::minutes(minutes_ago));
        let fetch = |ago, state: &str, bank: &str, ms| EndedFetch {
            finished_ms: at(ago),
            state: state.to_owned(),
            bank_id: bank.to_owned(),
            duration_ms: Some(ms),
        };
        let day = PartnerDay {
            fetches: vec![
                fetch(5, "SUCCEEDED", "acme", 100),
                fetch(10, "FAILED", "acme", 300),
                fetch(90, "SUCCEEDED", "sandbox", 20),
                fetch(24 * 60 + 1, "SUCCEEDED", "sandbox", 20),
            ],
            attempts: vec![
                EndedAttempt {
                    started_ms: at(1),
                    succeeded: true,
                    latency_ms: Some(12),
                },
                EndedAttempt {
                    started_ms: at(2),
                    succeeded: false,
                    latency_ms: None,
                },
            ],
        };
        let ops = summarize(day, now);
        assert_eq!(ops.hours.len(), 24);
        let last = &ops.hours[23];
        assert_eq!((last.fetches_succeeded, last.fetches_failed), (1, 1));
        assert_eq!((last.webhooks_succeeded, last.webhooks_failed), (1, 1));
        assert_eq!(last.webhook_p50_ms, Some(12));
        assert_eq!(ops.hours[22].fetches_succeeded, 1, "90 minutes ago");
        let total: u32 = ops.hours.iter().map(|h| h.fetches_succeeded).sum();
        assert_eq!(total, 2, "the day-old fetch is out of the window");
        assert_eq!(ops.banks[0].bank_id, "acme");
        assert_eq!((ops.banks[0].fetches, ops.banks[0].failed), (2, 1));
        assert_eq!(ops.banks[0].p95_ms, Some(300));
    }
}
