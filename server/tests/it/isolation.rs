//! Partner isolation: every endpoint called with partner B's key on partner A's ids answers
//! exactly as for ids that do not exist.

use axum::http::Method;
use serde_json::json;

use crate::harness::{TestApp, acct};

#[tokio::test]
async fn another_partners_ids_answer_like_unknown_ids_on_every_endpoint() {
    let app = TestApp::new().await;
    let a = app.partner(true).await;
    let b = app.partner(true).await;
    let user = app.user(&a).await;
    let account = app
        .connect(&a, &user, json!([acct("ACTIVE", None)]))
        .await
        .remove(0);
    let job = app.refresh(&a, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = uuid::Uuid::new_v4().to_string();

    let endpoints: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/v1/users/{user}"), None),
        (Method::GET, format!("/v1/users/{user}/accounts"), None),
        (Method::GET, format!("/v1/users/{user}/transactions"), None),
        (
            Method::GET,
            format!("/v1/users/{user}/accounts/{account}/transactions"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/users/{user}/accounts-refresh"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/users/{user}/accounts-refresh/{job}"),
            None,
        ),
        (
            Method::POST,
            format!("/sandbox/v1/users/{user}/accounts"),
            Some(json!({ "accounts": [{}] })),
        ),
    ];
    let before = app.footprint().await;
    for (method, path, body) in endpoints {
        let theirs = app
            .call(method.clone(), &path, Some(&b), body.clone())
            .await;
        let nobodys = app
            .call(
                method.clone(),
                &path.replace(&user, &unknown),
                Some(&b),
                body,
            )
            .await;
        theirs.assert_problem(404, "USER_NOT_FOUND");
        assert_eq!(theirs.body["code"], nobodys.body["code"], "{method} {path}");
        assert_eq!(
            theirs.body["detail"], nobodys.body["detail"],
            "{method} {path}"
        );
    }
    assert_eq!(app.footprint().await, before, "B's calls wrote nothing");
    // A still sees its own.
    assert_eq!(
        app.get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &a)
            .await
            .status,
        200
    );
}
