//! The partner's last 24 hours: refreshes by outcome, each bank's latency, webhook success
//! and latency — charts rendered on the server as SVG (no script needed), each with its
//! numbers in a table for screen readers and for copying.

use leptos::prelude::*;

use super::{LoadError, Loading};
use crate::model::{BankLatency, OperationsView, OpsHour};
use crate::services::operations;

/// `/operations`.
#[component]
pub fn OperationsPage() -> impl IntoView {
    let data = Resource::new(|| (), |()| operations());
    view! {
        <section class="panel" aria-labelledby="ops-heading">
            <h1 id="ops-heading">"Operations"</h1>
            <p class="muted">"Your last 24 hours: refreshes, banks and webhooks. Each chart's numbers are in the table below it."</p>
            <Suspense fallback=|| view! { <Loading what="the last 24 hours" /> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <LoadError error=e what="operations" /> }.into_any(),
                        Ok(ops) => view! { <Day ops /> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn Day(ops: OperationsView) -> impl IntoView {
    let OperationsView { hours, banks, .. } = ops;
    let refreshes: u32 = hours
        .iter()
        .map(|h| h.fetches_succeeded + h.fetches_failed)
        .sum();
    let refresh_failures: u32 = hours.iter().map(|h| h.fetches_failed).sum();
    let attempts: u32 = hours
        .iter()
        .map(|h| h.webhooks_succeeded + h.webhooks_failed)
        .sum();
    let delivered: u32 = hours.iter().map(|h| h.webhooks_succeeded).sum();
    let refresh_summary =
        format!("{refreshes} account refreshes in the last 24 hours, {refresh_failures} failed.");
    let webhook_summary = format!(
        "{attempts} webhook attempts in the last 24 hours, {delivered} succeeded ({})",
        percent(delivered, attempts)
    );
    let refresh_bars: Vec<(u32, u32)> = hours
        .iter()
        .map(|h| (h.fetches_succeeded, h.fetches_failed))
        .collect();
    let webhook_bars: Vec<(u32, u32)> = hours
        .iter()
        .map(|h| (h.webhooks_succeeded, h.webhooks_failed))
        .collect();
    view! {
        <h2 id="refreshes-heading">"Refreshes"</h2>
        <Bars bars=refresh_bars summary=refresh_summary testid="refresh-chart" />
        <HourTable hours=hours.clone() kind=Kind::Refreshes />
        <h2 id="banks-heading">"Bank latency"</h2>
        <BankTable banks />
        <h2 id="webhooks-heading">"Webhooks"</h2>
        <Bars bars=webhook_bars summary=webhook_summary testid="webhook-chart" />
        <HourTable hours kind=Kind::Webhooks />
    }
}

/// `n` of `of` as a percentage, or a dash for none.
fn percent(n: u32, of: u32) -> String {
    if of == 0 {
        "–".to_owned()
    } else {
        format!("{:.1} %", f64::from(n) * 100.0 / f64::from(of))
    }
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "–".to_owned(), |ms| format!("{ms} ms"))
}

/// One bar per hour, oldest left: the successes from the bottom, the failures stacked above.
#[component]
fn Bars(bars: Vec<(u32, u32)>, summary: String, testid: &'static str) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 140.0;
    let slot = W / bars.len().max(1) as f64;
    let max = f64::from(
        bars.iter()
            .map(|(ok, bad)| ok + bad)
            .max()
            .unwrap_or(0)
            .max(1),
    );
    let height = move |n: u32| f64::from(n) / max * (H - 6.0);
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=summary.clone()
                preserveAspectRatio="none" data-testid=testid>
                <line x1="0" y1=H x2=W y2=H class="axis" />
                {bars.into_iter().enumerate().map(|(i, (ok, bad))| {
                    let x = i as f64 * slot + 1.0;
                    let (h_ok, h_bad) = (height(ok), height(bad));
                    view! {
                        <rect x=x y=H - h_ok width=slot - 2.0 height=h_ok class="bar ok" />
                        <rect x=x y=H - h_ok - h_bad width=slot - 2.0 height=h_bad class="bar bad" />
                    }
                }).collect_view()}
            </svg>
            <figcaption class="muted">{summary} " One bar per hour, oldest on the left; failures stacked on top."</figcaption>
        </figure>
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refreshes,
    Webhooks,
}

/// The hours with anything in them, newest first.
#[component]
fn HourTable(hours: Vec<OpsHour>, kind: Kind) -> impl IntoView {
    let rows: Vec<OpsHour> = hours
        .into_iter()
        .rev()
        .filter(|h| match kind {
            Kind::Refreshes => h.fetches_succeeded + h.fetches_failed > 0,
            Kind::Webhooks => h.webhooks_succeeded + h.webhooks_failed > 0,
        })
        .collect();
    let (caption, testid) = match kind {
        Kind::Refreshes => ("Account refreshes per hour", "refresh-hours"),
        Kind::Webhooks => ("Webhook attempts per hour", "webhook-hours"),
    };
    if rows.is_empty() {
        return view! { <p class="muted" data-testid=testid>"Nothing in the last 24 hours."</p> }
            .into_any();
    }
    view! {
        <div class="table-wrap"><table class="grid" data-testid=testid>
            <caption class="sr-only">{caption}</caption>
            <thead><tr>
                <th scope="col">"Hour (UTC)"</th>
                {match kind {
                    Kind::Refreshes => view! {
                        <th scope="col">"Succeeded"</th><th scope="col">"Failed"</th><th scope="col">"Failure rate"</th>
                    }.into_any(),
                    Kind::Webhooks => view! {
                        <th scope="col">"Succeeded"</th><th scope="col">"Failed"</th><th scope="col">"Success rate"</th>
                        <th scope="col">"Latency p50"</th><th scope="col">"Latency p95"</th>
                    }.into_any(),
                }}
            </tr></thead>
            <tbody>
                {rows.into_iter().map(|h| {
                    let hour = h.start.format("%Y-%m-%d %H:%M").to_string();
                    match kind {
                        Kind::Refreshes => view! {
                            <tr data-testid="hour">
                                <th scope="row">{hour}</th>
                                <td data-testid="succeeded">{h.fetches_succeeded}</td>
                                <td data-testid="failed">{h.fetches_failed}</td>
                                <td>{percent(h.fetches_failed, h.fetches_succeeded + h.fetches_failed)}</td>
                            </tr>
                        }.into_any(),
                        Kind::Webhooks => view! {
                            <tr data-testid="hour">
                                <th scope="row">{hour}</th>
                                <td data-testid="succeeded">{h.webhooks_succeeded}</td>
                                <td data-testid="failed">{h.webhooks_failed}</td>
                                <td>{percent(h.webhooks_succeeded, h.webhooks_succeeded + h.webhooks_failed)}</td>
                                <td>{ms(h.webhook_p50_ms)}</td>
                                <td>{ms(h.webhook_p95_ms)}</td>
                            </tr>
                        }.into_any(),
                    }
                }).collect_view()}
            </tbody>
        </table></div>
    }
    .into_any()
}

#[component]
fn BankTable(banks: Vec<BankLatency>) -> impl IntoView {
    if banks.is_empty() {
        return view! { <p class="muted" data-testid="bank-latency">"No fetch ended in the last 24 hours."</p> }
            .into_any();
    }
    view! {
        <div class="table-wrap"><table class="grid" data-testid="bank-latency">
            <caption class="sr-only">"Fetch time per bank, last 24 hours"</caption>
            <thead><tr>
                <th scope="col">"Bank"</th><th scope="col">"Fetches"</th><th scope="col">"Failed"</th>
                <th scope="col">"p50"</th><th scope="col">"p95"</th>
            </tr></thead>
            <tbody>
                {banks.into_iter().map(|b| view! {
                    <tr data-testid="bank">
                        <th scope="row"><code>{b.bank_id}</code></th>
                        <td data-testid="fetches">{b.fetches}</td>
                        <td>{b.failed}</td>
                        <td>{ms(b.p50_ms)}</td>
                        <td>{ms(b.p95_ms)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></div>
    }
    .into_any()
}
