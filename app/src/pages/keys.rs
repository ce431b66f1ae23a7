//! API keys: the list (prefixes only), create (the key is shown once), revoke.

use leptos::prelude::*;

use super::{CsrfField, LoadError, Loading, Time};
use leptos_router::hooks::use_query_map;

use crate::services::{CreateApiKey, RevokeApiKey, api_keys};

/// `/keys`.
#[component]
pub fn KeysPage() -> impl IntoView {
    let keys = Resource::new(|| (), |()| api_keys());
    let token = use_query_map().with_untracked(|q| q.get("reveal"));
    let revealed = Resource::new(move || token.clone(), super::webhooks::take_revealed);
    view! {
        <section class="panel" aria-labelledby="keys-heading">
            <h1 id="keys-heading">"API keys"</h1>
            <p class="muted">"Send one as the " <code>"x-api-key"</code> " header. Keys are stored hashed: a new key is shown once."</p>
            <NewKey />
            <Suspense fallback=|| view! { <Loading what="keys" /> }>
                {move || Suspend::new(async move {
                    let secret = revealed.await.map(|s| view! {
                        <super::webhooks::Secret secret=s intro="Your new key — copy it now, it is not shown again:" />
                    });
                    match keys.await {
                        Err(e) => view! { <LoadError error=e what="list of keys" /> }.into_any(),
                        Ok(keys) => view! {
                            {secret}
                            <div class="table-wrap"><table class="grid" data-testid="keys">
                                <thead><tr><th scope="col">"Key"</th><th scope="col">"Created"</th><th scope="col">"State"</th></tr></thead>
                                <tbody>
                                    {keys.into_iter().map(|k| { let prefix = k.prefix.clone(); view! {
                                        <tr data-testid="key" data-prefix=prefix>
                                            <th scope="row"><code>{k.prefix} "…"</code></th>
                                            <td><Time at=k.created_at /></td>
                                            <td>{match k.revoked_at {
                                                Some(at) => view! { <span>"revoked " <Time at /></span> }.into_any(),
                                                None => view! { <Revoke id=k.id /> }.into_any(),
                                            }}</td>
                                        </tr>
                                    } }).collect_view()}
                                </tbody>
                            </table></div>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// "Create a key": a plain form; the keys page then shows the new key once.
#[component]
fn NewKey() -> impl IntoView {
    let path = super::webhooks::action_path::<CreateApiKey>();
    view! {
        <form method="post" action=path class="actions">
            <CsrfField />
            <button type="submit" class="primary" data-testid="create-key">"Create a key"</button>
        </form>
    }
}

/// Revokes a key: a plain form.
#[component]
fn Revoke(id: String) -> impl IntoView {
    let path = super::webhooks::action_path::<RevokeApiKey>();
    view! {
        <form method="post" action=path>
            <CsrfField />
            <input type="hidden" name="id" value=id />
            <button type="submit" class="small danger" data-testid="revoke">"Revoke"</button>
        </form>
    }
}
