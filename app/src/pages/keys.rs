//! API keys: the list (prefixes only), create (the key is shown once), revoke.

use leptos::prelude::*;

use super::{LoadError, Loading, Time};
use crate::services::{RevokeApiKey, api_keys, create_api_key, message};

/// `/keys`.
#[component]
pub fn KeysPage() -> impl IntoView {
    let keys = Resource::new(|| (), |()| api_keys());
    view! {
        <section class="panel" aria-labelledby="keys-heading">
            <h1 id="keys-heading">"API keys"</h1>
            <p class="muted">"Send one as the " <code>"x-api-key"</code> " header. Keys are stored hashed: a new key is shown once."</p>
            <NewKey />
            <Suspense fallback=|| view! { <Loading what="keys" /> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Err(e) => view! { <LoadError error=e what="list of keys" /> }.into_any(),
                        Ok(keys) => view! {
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

#[island]
fn NewKey() -> impl IntoView {
    let key = RwSignal::new(None::<String>);
    let failure = RwSignal::new(None::<String>);
    let click = move |_| {
        leptos::task::spawn_local(async move {
            match create_api_key().await {
                Ok(k) => key.set(Some(k)),
                Err(e) => failure.set(Some(message(&e))),
            }
        });
    };
    view! {
        <div class="actions">
            <button type="button" class="primary" on:click=click data-testid="create-key">"Create a key"</button>
        </div>
        {move || failure.get().map(|f| view! { <p class="error" role="alert">{f}</p> })}
        {move || key.get().map(|k| view! {
            <div class="secret" role="status" data-testid="new-key">
                <p>"Your new key — copy it now, it is not shown again:"</p>
                <p><code class="select-all">{k}</code></p>
                <p><a href="/keys">"Done"</a></p>
            </div>
        })}
    }
}

/// Revokes a key: a plain form.
#[component]
fn Revoke(id: String) -> impl IntoView {
    let path = super::webhooks::action_path::<RevokeApiKey>();
    view! {
        <form method="post" action=path>
            <input type="hidden" name="id" value=id />
            <button type="submit" class="small danger" data-testid="revoke">"Revoke"</button>
        </form>
    }
}
