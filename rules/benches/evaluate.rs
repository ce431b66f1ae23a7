//! `evaluate` throughput, in accounts per second, for users of 1, 10 and 1,000 accounts.
//! The same users are timed in wasm under Node by `rules/js-test/bench.mjs`
//! (`scripts/bench` runs both and writes the figures for BENCHMARKS.md).
#![allow(clippy::unwrap_used)] // a benchmark: fixed, valid inputs

use std::hint::black_box;

use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use freshet_rules::{AccountState, RefreshPolicy, evaluate};

/// A user of `n` accounts, sorted by id as the server loads them: every tenth consent
/// expired, the rest refreshed 1–19 minutes ago (all rate-limited, so every account's
/// next eligible moment is computed: the slower path). With `stale`, account 0 was never
/// refreshed, so every eligible account triggers.
fn user(n: usize, stale: bool) -> Vec<AccountState> {
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    (0..n)
        .map(|i| {
            let id = format!("acc-{i:05}");
            if i % 10 == 9 {
                AccountState::expired(id)
            } else if stale && i == 0 {
                AccountState::active(id)
            } else {
                let minutes = i64::try_from((i * 7) % 19 + 1).unwrap();
                AccountState::active(id).refreshed_at(now - TimeDelta::minutes(minutes))
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    let policy = RefreshPolicy::default();
    for (shape, stale) in [("rate_limited", false), ("triggered", true)] {
        let mut group = c.benchmark_group(format!("evaluate/{shape}"));
        for n in [1_usize, 10, 1000] {
            let accounts = user(n, stale);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &accounts, |b, accounts| {
                b.iter(|| evaluate(black_box(accounts), black_box(now), &policy));
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
