//! The portal through the same router: the session gate, sign-in and sign-out, and pages
//! rendered whole on the server for the signed-in user's partner only.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;

use crate::harness::{TestApp, acct, minutes, noon};

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
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
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 1 << 22).await.unwrap();
    Page {
        status,
        headers,
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
        "email={}&password={}&next=%2F&csrf={SIGN_IN_TOKEN}",
        form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
    );
    send(
        app,
        Request::post("/auth/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("freshet_sign_in={SIGN_IN_TOKEN}"))
            .body(Body::from(form))
            .unwrap(),
    )
    .await
}

/// The sign-in form's token, as a browser holds it in the cookie and the form alike.
const SIGN_IN_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The CSRF token of a session, from its cookie (`freshet_session=...`).
fn csrf(session_cookie: &str) -> String {
    let token = session_cookie.split_once('=').unwrap().1;
    server::services::sessions::csrf_token(token)
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
async fn the_site_has_an_icon_where_browsers_ask_for_it() {
    let app = TestApp::new().await;
    for path in ["/favicon.ico", "/favicon.svg"] {
        let icon = get(&app, path, None).await;
        assert_eq!(icon.status, StatusCode::OK, "{path}");
        assert_eq!(icon.headers[header::CONTENT_TYPE], "image/svg+xml");
        assert!(icon.body.starts_with("<svg"), "{path}");
    }
    let sign_in = get(&app, "/sign-in", None).await;
    assert!(sign_in.body.contains(r#"rel="icon""#), "the pages name it");
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

    // The sign-out form carries the session's token; without it the post is refused.
    let token = home
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's forms carry a token");
    assert_eq!(token, csrf(&session));
    let sign_out = |body: String| {
        Request::post("/auth/sign-out")
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    for forged in [
        String::new(),
        "csrf=".to_owned(),
        format!("csrf={}", csrf("freshet_session=another")),
    ] {
        assert_eq!(
            send(&app, sign_out(forged)).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let out = send(&app, sign_out(format!("csrf={token}"))).await;
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

/// Finding 11 of the hardening issue: no CSP, no frame protection, secrets cacheable.
#[tokio::test]
async fn pages_carry_a_nonce_csp_and_are_neither_framed_nor_cached() {
    let app = TestApp::new().await;
    let (key, session) = staff(&app, "ops@acme.example").await;
    let user = app.user(&key).await;
    for path in [
        "/".to_owned(),
        format!("/users/{user}"),
        "/webhooks".to_owned(),
    ] {
        let page = get(&app, &path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let header = |name: &str| page.headers[name].to_str().unwrap().to_owned();
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("object-src 'none'"), "{csp}");
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("script-src names a nonce");
        assert!(nonce.len() >= 16, "{nonce}");
        let scripts = page.body.matches("<script").count();
        assert!(scripts >= 2, "the hydration and local-time scripts");
        assert_eq!(
            page.body.matches(&format!("nonce=\"{nonce}\"")).count(),
            scripts,
            "every script carries this response's nonce: {}",
            page.body
        );
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("cache-control"), "no-store");
        assert_eq!(header("referrer-policy"), "same-origin");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let again = get(&app, "/", Some(&session)).await;
    assert!(
        !again.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains(
                get(&app, "/", Some(&session)).await.headers["content-security-policy"]
                    .to_str()
                    .unwrap()
            ),
        "a fresh nonce per response"
    );
}

#[tokio::test]
async fn another_partners_user_is_not_found_in_the_portal() {
    let app = TestApp::new().await;
    let (key, _) = staff(&app, "ops@acme.example").await;
    let (_, other_session) = staff(&app, "ops@rival.example").await;
    let user = app.user(&key).await;
    let page = get(&app, &format!("/users/{user}"), Some(&other_session)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
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

// --- hardening (issue 11: findings 1, 2, 5, 6) ------------------------------------------

/// A sign-in form post from `client` (as the connection's peer), with extra headers.
fn sign_in_request(
    email: &str,
    password: &str,
    next: &str,
    client: Option<[u8; 4]>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut request = Request::post("/auth/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("freshet_sign_in={SIGN_IN_TOKEN}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request
        .body(Body::from(format!(
            "email={}&password={}&next={}&csrf={SIGN_IN_TOKEN}",
            enc(email),
            enc(password),
            enc(next)
        )))
        .unwrap();
    if let Some(ip) = client {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40_000,
            ))));
    }
    request
}

async fn portal_user(app: &TestApp, email: &str) {
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
}

#[tokio::test]
async fn after_sign_in_only_a_path_of_this_site_is_followed() {
    let app = TestApp::new().await;
    portal_user(&app, "ops@acme.example").await;
    for (next, expected) in [
        ("/\t/evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/jobs?user=x", "/jobs?user=x"),
    ] {
        let page = send(
            &app,
            sign_in_request("ops@acme.example", "correct horse battery", next, None, &[]),
        )
        .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(page.location.as_deref(), Some(expected), "{next:?}");
        assert!(page.set_cookie.is_some());
    }
}

#[tokio::test]
async fn a_cross_site_post_is_refused_even_with_the_victims_cookie() {
    let app = TestApp::new().await;
    let (_, cookie) = staff(&app, "ops@acme.example").await;
    let create_key = <app::services::CreateApiKey as leptos::server_fn::ServerFn>::PATH;
    let keys_before = app.count("api_keys").await;
    let token = csrf(&cookie);
    let post = |headers: &[(&'static str, &'static str)]| {
        let mut request = Request::post(create_key)
            .header(header::COOKIE, &cookie)
            .header(header::HOST, "portal.example:3000")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(Body::from(format!("csrf={token}"))).unwrap()
    };
    for attack in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[
            ("origin", "http://portal.example:3000"),
            ("sec-fetch-site", "same-site"),
        ][..],
    ] {
        let page = send(&app, post(attack)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{attack:?}");
    }
    assert_eq!(app.count("api_keys").await, keys_before, "no key was made");
    let page = send(
        &app,
        post(&[
            ("origin", "http://portal.example:3000"),
            ("sec-fetch-site", "same-origin"),
        ]),
    )
    .await;
    assert!(
        page.status.is_success() || page.status.is_redirection(),
        "{} {}",
        page.status,
        page.body
    );
    assert_eq!(app.count("api_keys").await, keys_before + 1);

    // Login CSRF: another site cannot sign the visitor in to an account of its choosing.
    let page = send(
        &app,
        sign_in_request(
            "ops@acme.example",
            "correct horse battery",
            "/",
            None,
            &[("origin", "https://evil.example")],
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.set_cookie.is_none());
}

#[tokio::test]
async fn concurrent_wrong_passwords_are_counted_before_they_are_checked() {
    let app = TestApp::new().await;
    portal_user(&app, "ops@acme.example").await;
    let tries = (0..40).map(|i| {
        let password = if i == 39 {
            "correct horse battery"
        } else {
            "guess guess guess"
        };
        send(
            &app,
            sign_in_request("ops@acme.example", password, "/", None, &[]),
        )
    });
    let pages = futures_util::future::join_all(tries).await;
    let checked = pages
        .iter()
        .filter(|p| {
            !p.location
                .as_deref()
                .unwrap_or("")
                .contains("error=throttled")
        })
        .count();
    assert!(
        checked <= 5,
        "{checked} of 40 concurrent attempts were checked"
    );
    let signed_in = pages.iter().filter(|p| p.set_cookie.is_some()).count();
    assert!(
        signed_in == 0 || checked <= 5,
        "the right password only counts within the five"
    );
    let page = send(
        &app,
        sign_in_request("ops@acme.example", "correct horse battery", "/", None, &[]),
    )
    .await;
    assert!(page.location.unwrap().contains("error=throttled"));
}

#[tokio::test]
async fn one_client_cannot_try_many_emails_quickly() {
    let app = TestApp::new().await;
    let attacker = Some([192, 0, 2, 7]);
    let mut throttled = 0;
    let started = std::time::Instant::now();
    for i in 0..40 {
        let page = send(
            &app,
            sign_in_request(
                &format!("user{i}@victim.example"),
                "guess guess guess",
                "/",
                attacker,
                &[],
            ),
        )
        .await;
        if page.location.unwrap().contains("error=throttled") {
            throttled += 1;
        }
    }
    // 30 at once, then one more every 2 s (the bucket refills at 30 a minute): however long
    // the 40 attempts took on this machine, the rest were refused unchecked.
    let refilled = usize::try_from(started.elapsed().as_secs() / 2).unwrap();
    let allowed = (30 + refilled).min(40);
    assert!(
        throttled >= 40 - allowed,
        "{throttled} of 40 refused; at most {allowed} may have been checked"
    );
    let page = send(
        &app,
        sign_in_request(
            "someone@else.example",
            "guess guess guess",
            "/",
            Some([192, 0, 2, 8]),
            &[],
        ),
    )
    .await;
    assert!(
        page.location.unwrap().contains("error=invalid"),
        "another client is not held up"
    );
}

/// The peak resident memory of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// The real binary on a fresh database, and the address it listens on.
struct Server {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("freshet.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args([
            "--log-format",
            "text",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &db,
        ])
        .args(["--site-root", &dir.path().display().to_string()])
        .args(["--trusted-client-ip-header", "x-forwarded-for"])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let base = loop {
        let line = lines.next().expect("the server stopped").unwrap();
        if let Some(at) = line.find("freshet listening on ") {
            break line[at + "freshet listening on ".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    // Keep draining its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_flood_of_anonymous_sign_ins_keeps_the_servers_memory_bounded() {
    let server = start_server();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for round in 0..5 {
        let flood = (0..64).map(|i| {
            client
                .post(format!("{}/auth/sign-in", server.base))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                // An attacker sets its own sign-in cookie and token: they pass, as they should.
                .header(header::COOKIE, format!("freshet_sign_in={SIGN_IN_TOKEN}"))
                // As from 64 different clients (through a trusted proxy, which appended the
                // address it saw to what the client sent): no per-client limit holds them
                // back, every one reaches the password check.
                .header("x-forwarded-for", format!("10.0.0.1, 198.51.100.{i}"))
                .body(format!(
                    "email=nobody{round}-{i}%40example.com&password=guess+guess+guess&next=%2F&csrf={SIGN_IN_TOKEN}"
                ))
                .send()
        });
        for answer in futures_util::future::join_all(flood).await {
            let answer = answer.unwrap();
            let status = answer.status().as_u16();
            let to = answer
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default();
            // Checked and refused, or told to try again: never let through, never a 5xx.
            assert!(
                status == 303 && (to.contains("error=invalid") || to.contains("error=busy")),
                "{status} {to}"
            );
        }
    }
    // Unbounded, 64 argon2id hashes at once held ~1.2 GiB (and 5.5 GB after five rounds);
    // with a hashing slot per core, a few tens of MiB.
    let peak = peak_rss_mib(server.child.id());
    assert!(peak < 300, "the server's peak RSS was {peak} MiB");
}

/// Finding 9 of the hardening issue: server functions answered 500 to the caller's own
/// mistakes. Now: 400 for a missing or malformed argument or a refused value, 404 for what
/// is not there, 413 for a body too large — each with the message the page shows.
#[tokio::test]
async fn server_functions_answer_client_errors_with_4xx() {
    use leptos::server_fn::ServerFn;
    let app = TestApp::new().await;
    let (_, session) = staff(&app, "ops@acme.example").await;
    let token = csrf(&session);
    let call = |path: &'static str, body: Vec<u8>| {
        let body = [format!("csrf={token}&").into_bytes(), body].concat();
        let request = Request::post(path)
            .header(header::COOKIE, session.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        send(&app, request)
    };
    let cases: Vec<(&'static str, Vec<u8>, StatusCode, &str)> = vec![
        (
            app::services::GetUsers::PATH,
            b"query=".to_vec(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            app::services::GetUsers::PATH,
            b"query=&page=abc".to_vec(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            app::services::SandboxShiftClock::PATH,
            b"minutes=100000".to_vec(),
            StatusCode::BAD_REQUEST,
            "at most a week",
        ),
        (
            app::services::GetUsers::PATH,
            [b"query=".as_slice(), &vec![b'a'; 2 << 20], b"&page=1"].concat(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
    ];
    for (path, body, status, says) in cases {
        let reply = call(path, body).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
    }
    // The island's calls are JSON: a user that is not there is a 404, a bad body a 400.
    let json_call = |body: String| {
        send(
            &app,
            Request::post(app::services::GetUser::PATH)
                .header(header::COOKIE, session.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
    };
    let missing = json_call(format!("{{\"user_id\":\"{}\"}}", uuid::Uuid::new_v4())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert!(missing.body.contains(app::services::NOT_FOUND));
    assert_eq!(
        json_call("{".to_owned()).await.status,
        StatusCode::BAD_REQUEST
    );
    // And a good call still answers 200.
    assert_eq!(
        call(app::services::GetUsers::PATH, b"query=&page=1".to_vec())
            .await
            .status,
        StatusCode::OK
    );
}

/// Finding 7 of the hardening issue: signing out left the session's event stream flowing.
#[tokio::test]
async fn signing_out_ends_the_sessions_event_stream() {
    use futures_util::StreamExt;
    let app = TestApp::new().await;
    let (_, session) = staff(&app, "ops@acme.example").await;
    let response = app
        .router
        .clone()
        .oneshot(
            Request::get("/portal/events")
                .header(header::COOKIE, session.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let signed_out = send(
        &app,
        Request::post("/auth/sign-out")
            .header(header::COOKIE, session.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={}", csrf(&session))))
            .unwrap(),
    )
    .await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        while body.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with the session");
}

/// Finding 6, the token half: a same-site request of a session still needs the session's
/// token in its form (or must be JSON, which no other site can send), and the sign-in form
/// needs the token given with it.
#[tokio::test]
async fn forms_need_the_sessions_token_and_the_island_speaks_json() {
    use leptos::server_fn::ServerFn;
    let app = TestApp::new().await;
    let (key, session) = staff(&app, "ops@acme.example").await;
    let user = app.user(&key).await;
    let post = |path: &'static str, content_type: &'static str, body: String| {
        send(
            &app,
            Request::post(path)
                .header(header::COOKIE, session.as_str())
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
    };
    let form = "application/x-www-form-urlencoded";
    let keys_before = app.count("api_keys").await;
    let no_token = post(app::services::CreateApiKey::PATH, form, String::new()).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("api_keys").await, keys_before);
    let with_token = post(
        app::services::CreateApiKey::PATH,
        form,
        format!("csrf={}", csrf(&session)),
    )
    .await;
    assert!(
        with_token.status.is_success() || with_token.status.is_redirection(),
        "{}",
        with_token.status
    );
    assert_eq!(app.count("api_keys").await, keys_before + 1);
    // The live island's refresh: JSON, no token needed.
    let refresh = post(
        app::services::RefreshUser::PATH,
        "application/json",
        serde_json::json!({ "user_id": user }).to_string(),
    )
    .await;
    assert_eq!(refresh.status, StatusCode::OK, "{}", refresh.body);

    // Sign-in: the page sets a cookie and puts the same token in its form.
    let page = get(&app, "/sign-in", None).await;
    let cookie = page.set_cookie.expect("the form's cookie");
    let token = cookie
        .strip_prefix("freshet_sign_in=")
        .and_then(|c| c.split(';').next())
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        page.body
            .contains(&format!("name=\"csrf\" value=\"{token}\""))
    );
    // A post whose form token matches no cookie of this site signs nobody in.
    let forged = send(
        &app,
        Request::post("/auth/sign-in")
            .header(header::CONTENT_TYPE, form)
            .body(Body::from(
                "email=ops%40acme.example&password=correct+horse+battery&next=%2F&csrf=abc",
            ))
            .unwrap(),
    )
    .await;
    assert!(forged.set_cookie.is_none());
    assert!(forged.location.unwrap().contains("error=expired"));
}

/// Finding 2's last part: anyone could lock any email for minutes with five tries. A
/// stranger's guesses now lock out only the stranger; the owner, elsewhere, signs in.
#[tokio::test]
async fn a_strangers_guesses_do_not_lock_the_owner_out() {
    let app = TestApp::new().await;
    portal_user(&app, "ops@acme.example").await;
    let stranger = Some([198, 51, 100, 9]);
    for _ in 0..5 {
        let page = send(
            &app,
            sign_in_request("ops@acme.example", "guess guess guess", "/", stranger, &[]),
        )
        .await;
        assert!(page.location.unwrap().contains("error=invalid"));
    }
    let locked = send(
        &app,
        sign_in_request(
            "ops@acme.example",
            "correct horse battery",
            "/",
            stranger,
            &[],
        ),
    )
    .await;
    assert!(locked.location.unwrap().contains("error=throttled"));
    assert!(locked.set_cookie.is_none());
    let owner = send(
        &app,
        sign_in_request(
            "ops@acme.example",
            "correct horse battery",
            "/",
            Some([192, 0, 2, 44]),
            &[],
        ),
    )
    .await;
    assert!(owner.set_cookie.is_some(), "{:?}", owner.location);
}

/// The portal's requests draw on the same per-partner share as the partner's API key: a
/// flood of them from one partner's staff is refused with 429 and when to come back, and
/// another partner's staff are served.
#[tokio::test]
async fn a_partners_portal_requests_count_against_its_share() {
    let app = TestApp::with_api_rate(server::services::ApiRate::new(1, 5)).await;
    let (key, session) = staff(&app, "ops@acme.example").await;
    let (_, other) = staff(&app, "ops@other.example").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&app, "/", Some(&session)).await.status);
    }
    assert_eq!(&statuses[..5], &[StatusCode::OK; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    let refused = get(&app, "/", Some(&session)).await;
    assert_eq!(refused.headers["retry-after"], "1");
    // The API key shares the bucket; the other partner has its own.
    assert_eq!(
        app.get("/v1/webhooks/subscriptions", &key).await.status,
        429
    );
    assert_eq!(get(&app, "/", Some(&other)).await.status, StatusCode::OK);
}
