//! The users list: search by id or reference, newest first, in pages of 25. A plain GET
//! form, so searching and paging are links that work without script.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::{LoadError, Loading, Time};
use crate::format::relative;
use crate::model::Label;
use crate::services::get_users;

/// `/?q=...&page=N`.
#[component]
pub fn UsersPage() -> impl IntoView {
    let query = use_query_map();
    let params = move || {
        query.with(|q| {
            (
                q.get("q").unwrap_or_default(),
                q.get("page")
                    .and_then(|p| p.parse::<u32>().ok())
                    .unwrap_or(1)
                    .max(1),
            )
        })
    };
    let users = Resource::new(params, |(q, page)| get_users(q, page));
    view! {
        <section class="panel" aria-labelledby="users-heading">
            <h1 id="users-heading">"Users"</h1>
            <form method="get" action="/" class="search" role="search">
                <label for="user-search" class="visually-hidden">"Search users by id or reference"</label>
                <input id="user-search" type="search" name="q" placeholder="User id or your reference" value=move || params().0 />
                <button type="submit">"Search"</button>
            </form>
            <Suspense fallback=|| view! { <Loading what="users" /> }>
                {move || Suspend::new(async move {
                    let (q, page) = params();
                    match users.await {
                        Err(e) => view! { <LoadError error=e what="list of users" /> }.into_any(),
                        Ok(list) if list.items.is_empty() => view! {
                            <p class="empty" data-testid="no-users">
                                {if q.is_empty() { "No users yet. Create them through the API, or on the Sandbox page.".to_owned() } else { format!("No user matches “{q}”.") }}
                            </p>
                        }.into_any(),
                        Ok(list) => {
                            let now = list.now;
                            let link = move |p: u32| format!("/?q={}&page={p}", encode(&q));
                            view! {
                                <div class="table-wrap">
                                    <table class="grid" data-testid="users">
                                        <caption class="visually-hidden">"Users, newest first"</caption>
                                        <thead><tr>
                                            <th scope="col">"User"</th><th scope="col">"Source"</th>
                                            <th scope="col">"Accounts"</th><th scope="col">"Last refresh"</th><th scope="col">"Created"</th>
                                        </tr></thead>
                                        <tbody>
                                            {list.items.into_iter().map(|u| view! {
                                                <tr>
                                                    <th scope="row">
                                                        <a href=format!("/users/{}", u.user_id)><code>{u.user_id.clone()}</code></a>
                                                        {u.external_reference.map(|r| view! { <span class="muted ref">{r}</span> })}
                                                    </th>
                                                    <td>{u.source.as_str().to_lowercase()}</td>
                                                    <td>{u.accounts}</td>
                                                    <td>{u.last_refresh.map_or_else(|| "never".to_owned(), |at| relative(at, now))}</td>
                                                    <td><Time at=u.created_at /></td>
                                                </tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                                <nav class="pager" aria-label="Pages">
                                    {(page > 1).then(|| view! { <a href=link(page - 1) rel="prev">"← Newer"</a> })}
                                    <span class="muted">"Page " {page}</span>
                                    {list.has_more.then(|| view! { <a href=link(page + 1) rel="next">"Older →"</a> })}
                                </nav>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
