//! The portal's page and health, through the same router.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use crate::harness::TestApp;

async fn get(app: &TestApp, path: &str) -> (StatusCode, Option<String>, String) {
    let response = app
        .router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::new().await;
    let (status, _, body) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn the_portal_page_arrives_whole_with_its_preview_and_the_island_loader() {
    let app = TestApp::new().await;
    let (status, content_type, html) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().starts_with("text/html"));
    // Rendered on the server, before any wasm runs: the accounts and the rules' decision.
    assert!(html.contains("Monzo current account"), "{html}");
    assert!(
        html.contains("Refresh will trigger 2 of 3 accounts."),
        "{html}"
    );
    assert!(
        !html.contains("Loading the user"),
        "no placeholder: the HTML is complete"
    );
    // The island and the script that hydrates it, under the names the build writes.
    assert!(html.contains("<leptos-island"), "{html}");
    assert!(
        html.contains("/pkg/freshet.js") && html.contains("/pkg/freshet_bg.wasm"),
        "{html}"
    );
}

#[tokio::test]
async fn an_unknown_page_is_not_found() {
    let app = TestApp::new().await;
    let (status, _, _) = get(&app, "/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
