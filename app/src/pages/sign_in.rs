//! Sign-in: a plain form that posts to the server's `/auth/sign-in` (which sets the session
//! cookie and redirects), so it works before — and without — any script.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The sign-in page; `?error=invalid|throttled|busy|expired` and `?signed_out=1` say what
/// happened. Its form carries the token the server gave with the page (login CSRF).
#[component]
pub fn SignInPage() -> impl IntoView {
    let query = use_query_map();
    let (error, email, signed_out, next) = query.with_untracked(|q| {
        (
            q.get("error"),
            q.get("email").unwrap_or_default(),
            q.get("signed_out").is_some(),
            q.get("next").unwrap_or_default(),
        )
    });
    let problem = error.map(|e| match e.as_str() {
        "throttled" => "Too many attempts. Wait a few minutes, then try again.",
        "busy" => "Many people are signing in right now. Try again in a moment.",
        "expired" => "This form had expired. Enter your email and password again.",
        _ => "That email and password do not match. Check both and try again.",
    });
    let token = sign_in_token();
    view! {
        <section class="panel narrow" aria-labelledby="sign-in-heading">
            <h1 id="sign-in-heading">"Sign in"</h1>
            {signed_out.then(|| view! { <p class="notice" role="status" data-testid="signed-out">"You are signed out."</p> })}
            {problem.map(|p| view! { <p class="error" role="alert" data-testid="sign-in-error">{p}</p> })}
            <form method="post" action="/auth/sign-in" class="stack">
                <input type="hidden" name="next" value=next />
                <input type="hidden" name="csrf" value=token />
                <label>
                    "Email"
                    <input type="email" name="email" autocomplete="username" required value=email />
                </label>
                <label>
                    "Password"
                    <input type="password" name="password" autocomplete="current-password" required />
                </label>
                <button type="submit" class="primary">"Sign in"</button>
            </form>
        </section>
    }
}

/// The token the server put in this request for the sign-in form (none in the browser:
/// the page is never rendered there).
fn sign_in_token() -> String {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<crate::model::SignInToken>().cloned())
            .map(|t| t.0)
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        String::new()
    }
}
