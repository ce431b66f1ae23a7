//! Refresh jobs: the list (optionally one user's) and a job's page with each account's
//! state and timings, the events it produced and their webhook deliveries.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{LoadError, Loading, StatusBadge, Time};
use crate::model::JobListItem;
use crate::model::Label;
use crate::services::{get_job, get_jobs};

fn duration(job: &JobListItem) -> String {
    job.finished_at.map_or_else(
        || "running".to_owned(),
        |end| {
            format!(
                "{:.1} s",
                (end - job.created_at).num_milliseconds() as f64 / 1000.0
            )
        },
    )
}

/// `/jobs?page=N`.
#[component]
pub fn JobsPage() -> impl IntoView {
    let query = use_query_map();
    let page = move || {
        query.with(|q| {
            q.get("page")
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(1)
                .max(1)
        })
    };
    let user = move || query.with(|q| q.get("user").unwrap_or_default());
    let jobs = Resource::new(
        move || (page(), user()),
        |(page, user)| get_jobs(page, user),
    );
    view! {
        <section class="panel" aria-labelledby="jobs-heading">
            <h1 id="jobs-heading">"Refresh jobs"</h1>
            <Suspense fallback=|| view! { <Loading what="jobs" /> }>
                {move || Suspend::new(async move {
                    let page = page();
                    let user = user();
                    let link = move |p: u32| if user.is_empty() { format!("/jobs?page={p}") } else { format!("/jobs?user={user}&page={p}") };
                    match jobs.await {
                        Err(e) => view! { <LoadError error=e what="list of jobs" /> }.into_any(),
                        Ok(list) if list.items.is_empty() => view! { <p class="empty">"No refresh has run yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <div class="table-wrap">
                                <table class="grid" data-testid="jobs">
                                    <caption class="visually-hidden">"Jobs, newest first"</caption>
                                    <thead><tr>
                                        <th scope="col">"Job"</th><th scope="col">"Kind"</th><th scope="col">"Status"</th>
                                        <th scope="col">"Accounts"</th><th scope="col">"Started"</th><th scope="col">"Took"</th>
                                    </tr></thead>
                                    <tbody>
                                        {list.items.into_iter().map(|j| {
                                            let took = duration(&j);
                                            view! {
                                                <tr>
                                                    <th scope="row"><a href=format!("/jobs/{}", j.job_id)><code>{j.job_id.clone()}</code></a>
                                                        <a class="muted ref" href=format!("/users/{}", j.user_id)>"user"</a></th>
                                                    <td>{j.kind.as_str().replace('_', " ").to_lowercase()}</td>
                                                    <td><StatusBadge status=j.status.as_str() /></td>
                                                    <td>{j.done} " / " {j.accounts}</td>
                                                    <td><Time at=j.created_at /></td>
                                                    <td>{took}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            <nav class="pager" aria-label="Pages">
                                {(page > 1).then(|| view! { <a href=link(page - 1) rel="prev">"← Newer"</a> })}
                                <span class="muted">"Page " {page}</span>
                                {list.has_more.then(|| view! { <a href=link(page + 1) rel="next">"Older →"</a> })}
                            </nav>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// `/jobs/{id}`.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let job = Resource::new(id, get_job);
    view! {
        <Suspense fallback=|| view! { <Loading what="the job" /> }>
            {move || Suspend::new(async move {
                match job.await {
                    Err(e) => view! { <LoadError error=e what="job" /> }.into_any(),
                    Ok(detail) => {
                        let j = detail.job;
                        let took = duration(&j);
                        view! {
                            <section class="panel" aria-labelledby="job-heading" data-testid="job-page">
                                <h1 id="job-heading">"Job " <code>{j.job_id.clone()}</code></h1>
                                <p>
                                    <StatusBadge status=j.status.as_str() />
                                    " " {j.kind.as_str().replace('_', " ").to_lowercase()} " refresh of "
                                    <a href=format!("/users/{}", j.user_id)>"user " <code>{j.user_id.clone()}</code></a>
                                    ", started " <Time at=j.created_at /> ", " {took}
                                </p>
                                <h2>"Accounts"</h2>
                                <div class="table-wrap"><table class="grid">
                                    <thead><tr><th scope="col">"Account"</th><th scope="col">"State"</th><th scope="col">"Attempts"</th>
                                        <th scope="col">"Started"</th><th scope="col">"Ended"</th><th scope="col">"Result"</th></tr></thead>
                                    <tbody>
                                        {detail.items.into_iter().map(|it| view! {
                                            <tr>
                                                <th scope="row"><code>{it.account_id}</code></th>
                                                <td><StatusBadge status=it.state.as_str() /></td>
                                                <td>{it.attempts}</td>
                                                <td>{it.started_at.map(|at| view! { <Time at /> })}</td>
                                                <td>{it.finished_at.map(|at| view! { <Time at /> })}</td>
                                                <td>{match (it.new_transactions, it.error_code) {
                                                    (_, Some(code)) => code,
                                                    (Some(n), None) => format!("{n} new transactions"),
                                                    _ => String::new(),
                                                }}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table></div>
                                <h2>"Events and webhook deliveries"</h2>
                                {if detail.events.is_empty() {
                                    view! { <p class="empty">"No event yet: they appear as accounts finish."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="events">
                                            {detail.events.into_iter().map(|e| view! {
                                                <li>
                                                    <code>{e.event_type}</code> " for " <code>{e.account_id}</code> " at " <Time at=e.created_at />
                                                    <ul>
                                                        {if e.deliveries.is_empty() {
                                                            view! { <li class="muted">"no webhook subscription wanted it"</li> }.into_any()
                                                        } else {
                                                            e.deliveries.into_iter().map(|(sub, status, attempts)| view! {
                                                                <li><a href=format!("/webhooks/{sub}")>"subscription"</a> ": " <StatusBadge status=status.as_str() /> " after " {attempts} " attempt(s)"</li>
                                                            }).collect_view().into_any()
                                                        }}
                                                    </ul>
                                                </li>
                                            }).collect_view()}
                                        </ul>
                                    }.into_any()
                                }}
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}
