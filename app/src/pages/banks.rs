//! The banks the partner's users can connect, with how each has been answering lately.

use leptos::prelude::*;

use super::{LoadError, Loading};
use crate::services::banks;

/// `/banks`.
#[component]
pub fn BanksPage() -> impl IntoView {
    let list = Resource::new(|| (), |()| banks());
    view! {
        <section class="panel" aria-labelledby="banks-heading">
            <h1 id="banks-heading">"Banks"</h1>
            <p class="muted">"The banks your users can connect through the connection journey, and how each has answered in the last 15 minutes."</p>
            <Suspense fallback=|| view! { <Loading what="banks" /> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <LoadError error=e what="list of banks" /> }.into_any(),
                        Ok(banks) if banks.is_empty() => view! {
                            <p data-testid="no-banks">"No bank is registered on this server yet (" <code>"freshet bank add"</code> ")."</p>
                        }.into_any(),
                        Ok(banks) => view! {
                            <div class="table-wrap"><table class="grid" data-testid="banks">
                                <thead><tr><th scope="col">"Bank"</th><th scope="col">"Id"</th><th scope="col">"Status"</th></tr></thead>
                                <tbody>
                                    {banks.into_iter().map(|b| {
                                        let words = match b.status.as_str() {
                                            "DEGRADED" => "degraded: a quarter or more of its fetches fail",
                                            "UNAVAILABLE" => "unavailable: its recent fetches all failed",
                                            _ => "available",
                                        };
                                        view! {
                                            <tr data-testid="bank" data-status=b.status.clone()>
                                                <th scope="row">{b.name}</th>
                                                <td><code>{b.bank_id}</code></td>
                                                <td>{words}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table></div>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}
