//! The portal through the same router: the session gate, sign-in and sign-out, and pages
//! rendered whole on the server for the signed-in user's partner only.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;

use crate::harness::{TestApp, acct, minutes, noon};

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

async fn send(app: &TestApp, request: Request<Body>) -> Page {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (status, location, set_cookie) = (
        response.status(),
        header(header::LOCATION),
        header(header::SET_COOKIE),
    );
    let body = to_bytes(response.into_body(), 1 << 22).await.unwrap();
    Page {
        status,
        location,
        set_cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    let mut request = Request::get(path);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Page {
    let form = format!(
        "email={}&password={}&next=%2F",
        form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
    );
    send(
        app,
        Request::post("/auth/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await
}

/// A partner with a portal user; returns (api key, session cookie).
async fn staff(app: &TestApp, email: &str) -> (String, String) {
    let created = app
        .store
        .partners()
        .create("Acme", true, noon())
        .await
        .unwrap();
    app.store
        .portal_users()
        .create(created.partner_id, email, "correct horse battery", noon())
        .await
        .unwrap();
    let page = sign_in(app, email, "correct horse battery").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let cookie = page.set_cookie.unwrap();
    (
        created.api_key,
        cookie.split(';').next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::new().await;
    let page = get(&app, "/healthz", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body, "ok");
}

#[tokio::test]
async fn without_a_session_pages_send_you_to_sign_in_and_server_functions_refuse() {
    let app = TestApp::new().await;
    let page = get(&app, "/users/abc?x=1", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location.as_deref(),
        Some("/sign-in?next=%2Fusers%2Fabc%3Fx%3D1")
    );
    let sign_in_page = get(&app, "/sign-in", None).await;
    assert_eq!(sign_in_page.status, StatusCode::OK);
    assert!(
        sign_in_page.body.contains("action=\"/auth/sign-in\""),
        "{}",
        sign_in_page.body
    );
    let call = send(
        &app,
        Request::post(<app::services::GetUsers as leptos::server_fn::ServerFn>::PATH)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("query=&page=1"))
            .unwrap(),
    )
    .await;
    assert_eq!(call.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, "/portal/events", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn signing_in_sets_an_httponly_samesite_cookie_and_a_wrong_password_does_not() {
    let app = TestApp::new().await;
    let created = app
        .store
        .partners()
        .create("Acme", true, noon())
        .await
        .unwrap();
    app.store
        .portal_users()
        .create(
            created.partner_id,
            "ops@acme.example",
            "correct horse battery",
            noon(),
        )
        .await
        .unwrap();
    let wrong = sign_in(&app, "ops@acme.example", "wrong password!").await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER);
    assert!(
        wrong
            .location
            .unwrap()
            .starts_with("/sign-in?error=invalid&email=ops%40acme.example")
    );
    assert!(wrong.set_cookie.is_none());
    let unknown = sign_in(&app, "nobody@acme.example", "correct horse battery").await;
    assert!(
        unknown.location.unwrap().contains("error=invalid"),
        "the same answer for an unknown email"
    );

    let right = sign_in(&app, "OPS@acme.example", "correct horse battery").await;
    assert_eq!(right.location.as_deref(), Some("/"));
    let cookie = right.set_cookie.unwrap();
    assert!(cookie.starts_with("freshet_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let home = get(&app, "/", Some(&session)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.body.contains("ops@acme.example"),
        "the header says who is signed in"
    );

    let out = send(
        &app,
        Request::post("/auth/sign-out")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(out.location.as_deref(), Some("/sign-in?signed_out=1"));
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(
        get(&app, "/", Some(&session)).await.status,
        StatusCode::SEE_OTHER,
        "the session is gone"
    );
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_even_when_the_next_one_is_right() {
    let app = TestApp::new().await;
    let created = app
        .store
        .partners()
        .create("Acme", true, noon())
        .await
        .unwrap();
    app.store
        .portal_users()
        .create(
            created.partner_id,
            "ops@acme.example",
            "correct horse battery",
            noon(),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        sign_in(&app, "ops@acme.example", "guess guess guess").await;
    }
    let page = sign_in(&app, "ops@acme.example", "correct horse battery").await;
    assert!(page.location.unwrap().contains("error=throttled"));
    assert!(page.set_cookie.is_none());
}

#[tokio::test]
async fn a_user_page_arrives_whole_with_accounts_preview_and_island() {
    let app = TestApp::new().await;
    let (key, session) = staff(&app, "ops@acme.example").await;
    let user = app.user(&key).await;
    app.connect(
        &key,
        &user,
        json!([
            acct("ACTIVE", Some(noon() - minutes(25))),
            acct("ACTIVE", Some(noon() - minutes(5))),
            acct("EXPIRED", None)
        ]),
    )
    .await;
    let page = get(&app, &format!("/users/{user}"), Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Refresh will trigger 2 of 3 accounts."),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("Loading "),
        "no placeholder: the HTML is complete"
    );
    assert!(page.body.contains("<leptos-island"), "{}", page.body);
    assert!(
        page.body.contains("/pkg/freshet") && page.body.contains("_bg.wasm"),
        "the bundle is loaded"
    );
    let list = get(&app, "/", Some(&session)).await;
    assert!(list.body.contains(&user), "the users list links the user");
}

#[tokio::test]
async fn another_partners_user_is_not_found_in_the_portal() {
    let app = TestApp::new().await;
    let (key, _) = staff(&app, "ops@acme.example").await;
    let (_, other_session) = staff(&app, "ops@rival.example").await;
    let user = app.user(&key).await;
    let page = get(&app, &format!("/users/{user}"), Some(&other_session)).await;
    assert!(
        page.body.contains("data-testid=\"not-found\""),
        "{}",
        page.body
    );
    assert!(
        !page
            .body
            .contains(&format!("<code data-testid=\"user-id\">{user}"))
    );
    let list = get(&app, "/", Some(&other_session)).await;
    assert!(!list.body.contains(&user));
}

#[tokio::test]
async fn an_unknown_page_is_not_found() {
    let app = TestApp::new().await;
    let (_, session) = staff(&app, "ops@acme.example").await;
    let page = get(&app, "/no/such/page", Some(&session)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}
