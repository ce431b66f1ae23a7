//! Bad input on every endpoint: a problem+json 4xx, and nothing written.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use crate::harness::{TestApp, acct};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> crate::harness::Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    app.send(request.body(Body::from(body)).unwrap()).await
}

/// Method, path, content type, body, expected status and code.
type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn bad_bodies_get_problems_and_write_nothing() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([acct("ACTIVE", None)]))
        .await;
    let before = app.footprint().await;
    let json = Some("application/json");
    let accounts = format!("/sandbox/v1/users/{user}/accounts");
    let job = format!("/v1/users/{user}/accounts-refresh/not-a-uuid");
    let account_tx = format!("/v1/users/{user}/accounts/x/transactions");
    let cases: Vec<Case<'_>> = vec![
        (
            Method::POST,
            "/v1/users",
            json,
            b"{\"externalReference\": ".to_vec(),
            400,
            "MALFORMED_JSON",
        ),
        (
            Method::POST,
            "/v1/users",
            json,
            b"{\"externalReference\": 7}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/v1/users",
            json,
            b"{\"nickname\": \"x\"}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/v1/users",
            json,
            b"[]".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/v1/users",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::POST,
            "/v1/users",
            json,
            vec![b' '; 70 * 1024],
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            Method::POST,
            &accounts,
            json,
            b"{\"accounts\": [{\"consentStatus\": \"MAYBE\"}]}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            &accounts,
            json,
            b"{\"accounts\": [{}, {\"persona\": \"pirate\"}]}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            &accounts,
            json,
            b"{\"accounts\": []}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            &accounts,
            json,
            b"{\"accounts\": [{\"transactionCount\": 5}]}".to_vec(),
            422,
            "INCONSISTENT_BODY",
        ),
        (
            Method::POST,
            &accounts,
            None,
            b"{\"accounts\": [{}]}".to_vec(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::POST,
            "/sandbox/v1/users/nope/accounts",
            json,
            b"{\"accounts\": [{}]}".to_vec(),
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::POST,
            "/sandbox/v1/users",
            json,
            b"{\"source\": \"PARTNER\"}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/sandbox/v1/clock",
            json,
            b"{\"offsetSeconds\": \"soon\"}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/sandbox/v1/clock",
            json,
            b"{\"offsetSeconds\": 999999999999}".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            Method::GET,
            "/v1/users/not-a-uuid",
            None,
            vec![],
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::GET,
            "/v1/users/not-a-uuid/accounts",
            None,
            vec![],
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::GET,
            "/v1/users/not-a-uuid/transactions",
            None,
            vec![],
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::POST,
            "/v1/users/not-a-uuid/accounts-refresh",
            None,
            vec![],
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::GET,
            &job,
            None,
            vec![],
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::GET,
            &account_tx,
            None,
            vec![],
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            Method::DELETE,
            "/v1/users",
            None,
            vec![],
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            Method::GET,
            "/v1/nothing-here",
            None,
            vec![],
            404,
            "ROUTE_NOT_FOUND",
        ),
    ];
    for (method, path, content_type, body, status, code) in cases {
        let r = raw(&app, method.clone(), path, &key, content_type, body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.body);
        r.assert_problem(status, code);
    }
    assert_eq!(app.footprint().await, before);
}

#[tokio::test]
async fn the_problem_type_links_to_a_page_about_the_code() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let r = app.get("/v1/users/not-a-uuid", &key).await;
    let page = app
        .call(Method::GET, r.body["type"].as_str().unwrap(), None, None)
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .as_str()
            .unwrap()
            .contains("INVALID_PATH_PARAMETER")
    );
}

/// Finding 11 of the hardening issue: one user answered at many paths (`{…}`, `urn:uuid:`,
/// unhyphenated, upper-case). Only the contract's form is an id; the others are 400.
#[tokio::test]
async fn only_lowercase_hyphenated_ids_name_a_resource() {
    let app = crate::harness::TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    assert_eq!(
        app.get(&format!("/v1/users/{user}"), &key).await.status,
        200
    );
    let simple: String = user.chars().filter(|c| *c != '-').collect();
    for other in [
        user.to_uppercase(),
        format!("%7B{user}%7D"),
        format!("urn:uuid:{user}"),
        simple,
    ] {
        app.get(&format!("/v1/users/{other}/accounts"), &key)
            .await
            .assert_problem(400, "INVALID_PATH_PARAMETER");
    }
}
