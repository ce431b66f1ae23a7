//! The bank registry: `freshet bank add|list` and `freshet keys rotate` as an operator runs
//! them (the real binary, a real SQLite file), the secret sealed at rest, discovery from a
//! bank's OpenID configuration over HTTP, and `GET /v1/banks` with each bank's status read
//! from its recent answers.

use std::path::Path;
use std::process::Command;

use chrono::TimeDelta;
use serde_json::{Value, json};
use server::bank::sandbox::{Fault, FaultKind};
use server::secrets::Keyring;
use server::services::banks::{self, BankRegistration, Endpoints};

use crate::harness::{TestApp, file_contains as contains};
use crate::worker::{drain, worker};

const SECRET: &str = "bank-client-secret-7f3a9c";

fn freshet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(args)
        .env_remove(server::secrets::MASTER_KEY_ENV)
        .output()
        .unwrap()
}

#[test]
fn an_operator_registers_lists_and_rotates_without_the_secret_ever_showing() {
    let dir = tempfile::tempdir().unwrap();
    let db_file = dir.path().join("freshet.db");
    let db = format!("sqlite://{}", db_file.display());
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let add = |id: &str| {
        freshet(&[
            "bank",
            "add",
            "--id",
            id,
            "--name",
            "Acme Bank",
            "--api-base",
            "https://api.acme.example/open-banking/v3.1/aisp",
            "--authorization-url",
            "https://auth.acme.example/authorize",
            "--token-url",
            "https://auth.acme.example/token",
            "--client-id",
            "freshet-client",
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--max-in-flight",
            "4",
            "--database-url",
            &db,
        ])
    };
    let added = add("acme");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let printed: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(printed["bankId"], "acme");
    assert_eq!(printed["created"], true);
    assert!(add("acme").status.success(), "adding again updates");
    let refused = add("Not An Id");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("bank id"));

    let listed = freshet(&["bank", "list", "--database-url", &db]);
    assert!(listed.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["clientId"], "freshet-client");
    assert_eq!(lines[0]["maxInFlight"], 4);
    for output in [&added.stdout, &listed.stdout, &added.stderr, &listed.stderr] {
        assert!(!String::from_utf8_lossy(output).contains(SECRET));
    }
    // At rest: sealed, not in the database file (nor its WAL); the key file is the owner's.
    for file in ["freshet.db", "freshet.db-wal"] {
        assert!(
            !contains(&dir.path().join(file), SECRET),
            "{file} holds the secret"
        );
    }
    let key_file = dir.path().join("freshet.db.keys");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let sealed = || sealed_secret(&db_file);
    let before = sealed();
    let keys = Keyring::load(Some(&db_file)).unwrap();
    assert_eq!(
        keys.open("bank:acme:client_secret", &before).unwrap(),
        SECRET.as_bytes()
    );

    // A production server (no --sandbox) lists the registered bank, and no sandbox bank.
    let partner = freshet(&["partner", "create", "--name", "P", "--database-url", &db]);
    let partner: Value = serde_json::from_slice(&partner.stdout).unwrap();
    let listed = production_banks(&db, partner["apiKey"].as_str().unwrap());
    assert_eq!(
        listed,
        json!({ "data": [{ "bankId": "acme", "name": "Acme Bank", "status": "AVAILABLE" }] })
    );

    let rotated = freshet(&["keys", "rotate", "--database-url", &db]);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let said: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_eq!(said["resealed"], 1);
    assert_ne!(said["keyId"], keys.current_key_id());
    let after = sealed();
    assert_ne!(after, before);
    let keys = Keyring::load(Some(&db_file)).unwrap();
    assert_eq!(keys.current_key_id(), said["keyId"]);
    assert!(keys.is_current(&after));
    assert_eq!(
        keys.open("bank:acme:client_secret", &after).unwrap(),
        SECRET.as_bytes()
    );
}

/// `GET /v1/banks` of a production server (the real binary, no `--sandbox`) on `db`.
fn production_banks(db: &str, key: &str) -> Value {
    use std::io::{BufRead, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args([
            "--log-format",
            "text",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            db,
        ])
        .env("RUST_LOG", "info")
        .env_remove(server::secrets::MASTER_KEY_ENV)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut engine_started = false;
    let addr = loop {
        let line = lines.next().expect("the server stopped").unwrap();
        engine_started |= line.contains("refresh workers fetching from these banks");
        if let Some(at) = line.find("freshet listening on ") {
            break line[at + "freshet listening on ".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .trim_start_matches("http://")
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(engine_started, "the workers run without --sandbox");
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /v1/banks HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

/// The sealed client secret of bank `acme`, read straight from the file.
fn sealed_secret(db_file: &Path) -> String {
    let url = format!("sqlite://{}", db_file.display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let (sealed,): (String,) =
                sqlx::query_as("SELECT client_secret FROM banks WHERE id = 'acme'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            sealed
        })
}

/// A bank's discovery document served over HTTP on loopback.
async fn discovery_server(document: Value) -> String {
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/.well-known/openid-configuration")
}

fn registration(id: &str, endpoints: Endpoints) -> BankRegistration {
    BankRegistration {
        id: id.to_owned(),
        name: "Discovered Bank".to_owned(),
        api_base: "http://127.0.0.1:9/aisp".to_owned(),
        endpoints,
        client_id: "freshet".to_owned(),
        client_secret: SECRET.to_owned(),
        ca_pem: None,
        max_in_flight: 8,
        requests_per_second: 10.0,
    }
}

#[tokio::test]
async fn endpoints_come_from_the_banks_discovery_document_and_must_be_safe() {
    let app = TestApp::new().await;
    let keys = Keyring::ephemeral().unwrap();
    let url = discovery_server(json!({
        "issuer": "http://127.0.0.1:9",
        "authorization_endpoint": "http://127.0.0.1:9/authorize",
        "token_endpoint": "http://127.0.0.1:9/token",
    }))
    .await;
    let new = banks::register(
        &app.store,
        &keys,
        registration("disco", Endpoints::Discovery(url)),
        app.clock.now(),
    )
    .await
    .unwrap();
    assert!(new);
    let bank = app.store.banks().get("disco").await.unwrap().unwrap();
    assert_eq!(bank.issuer.as_deref(), Some("http://127.0.0.1:9"));
    assert_eq!(bank.authorization_url, "http://127.0.0.1:9/authorize");
    assert_eq!(bank.token_url, "http://127.0.0.1:9/token");
    assert!(!bank.client_secret.contains(SECRET));

    // A document sending tokens over plain http to another host is refused, nothing stored.
    let unsafe_url = discovery_server(json!({
        "issuer": "http://bank.example",
        "authorization_endpoint": "http://bank.example/authorize",
        "token_endpoint": "http://bank.example/token",
    }))
    .await;
    let refused = banks::register(
        &app.store,
        &keys,
        registration("unsafe", Endpoints::Discovery(unsafe_url)),
        app.clock.now(),
    )
    .await;
    assert!(refused.is_err());
    assert!(app.store.banks().get("unsafe").await.unwrap().is_none());
    let sandbox = banks::register(
        &app.store,
        &keys,
        registration(
            "sandbox",
            Endpoints::Given {
                authorization_url: "https://a.example/a".into(),
                token_url: "https://a.example/t".into(),
            },
        ),
        app.clock.now(),
    )
    .await;
    assert!(sandbox.is_err(), "the sandbox bank's id is taken");
}

#[tokio::test]
async fn a_partner_sees_each_bank_with_the_status_of_its_recent_answers() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    banks::register(
        &app.store,
        &Keyring::ephemeral().unwrap(),
        registration(
            "acme",
            Endpoints::Given {
                authorization_url: "https://auth.acme.example/a".into(),
                token_url: "https://auth.acme.example/t".into(),
            },
        ),
        app.clock.now(),
    )
    .await
    .unwrap();
    let listed = app.get("/v1/banks", &key).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.body,
        json!({ "data": [
            { "bankId": "acme", "name": "Discovered Bank", "status": "AVAILABLE" },
            { "bankId": "sandbox", "name": "freshet Sandbox Bank", "status": "AVAILABLE" },
        ]})
    );
    let serialized = listed.body.to_string();
    assert!(!serialized.contains(SECRET) && !serialized.contains("clientId"));

    // The sandbox bank fails every fetch of three accounts: UNAVAILABLE.
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([{}, {}, {}])).await;
    app.bank.set_fault(Fault {
        kind: Some(FaultKind::ServerError),
        ..Fault::default()
    });
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    let w = worker(&app).await;
    drain(&w).await;
    let status = |body: &Value, id: &str| {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["bankId"] == id)
            .map(|b| b["status"].clone())
            .unwrap()
    };
    let listed = app.get("/v1/banks", &key).await;
    assert_eq!(status(&listed.body, "sandbox"), "UNAVAILABLE");
    assert_eq!(status(&listed.body, "acme"), "AVAILABLE");
    // Answers older than 15 minutes no longer count.
    app.clock.shift(TimeDelta::minutes(16));
    let listed = app.get("/v1/banks", &key).await;
    assert_eq!(status(&listed.body, "sandbox"), "AVAILABLE");
}

/// `freshet sandbox-bank` prints the one command that registers it; run as printed, that
/// command reads the running bank's discovery document and registers it.
#[test]
fn the_standalone_sandbox_bank_prints_the_command_that_registers_it() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("bank.secret");
    let mut bank = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["sandbox-bank", "--bind", "127.0.0.1:0"])
        .args(["--client-secret-file", secret_file.to_str().unwrap()])
        .args(["--redirect-uri", "http://127.0.0.1:3000/connect/callback"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(bank.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    // The printed command, split as a shell would (one quoted argument: the name).
    let (before, rest) = line.split_once(" \"").unwrap();
    let (name, after) = rest.split_once("\" ").unwrap();
    let mut args: Vec<String> = before.split_whitespace().map(str::to_owned).collect();
    args.push(name.to_owned());
    args.extend(after.split_whitespace().map(str::to_owned));
    assert_eq!(&args[..3], ["freshet", "bank", "add"]);
    let db = format!("sqlite://{}", dir.path().join("freshet.db").display());
    args.extend(["--database-url".to_owned(), db.clone()]);
    let added = freshet(&args[1..].iter().map(String::as_str).collect::<Vec<_>>());
    let _ = bank.kill();
    let _ = bank.wait();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let printed: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(printed["bankId"], "sandbox-bank");
    assert!(printed["tokenUrl"].as_str().unwrap().ends_with("/token"));
    assert!(
        printed["authorizationUrl"]
            .as_str()
            .unwrap()
            .ends_with("/authorize")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!line.contains(&std::fs::read_to_string(&secret_file).unwrap()));
}

/// The standalone sandbox bank over HTTPS with a private CA, as a production server meets a
/// real bank: the printed command (which names the CA) registers it; without the CA the
/// bank's certificate is not trusted and nothing is registered.
#[test]
fn the_sandbox_bank_over_https_is_registered_through_its_private_ca() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca_file, cert_file, key_file) = (
        file("ca.pem", ca.pem()),
        file("bank.pem", leaf.pem()),
        file("bank.key", leaf_key.serialize_pem()),
    );
    let secret_file = dir.path().join("bank.secret");
    let mut bank = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["sandbox-bank", "--bind", "127.0.0.1:0"])
        .args(["--client-secret-file", secret_file.to_str().unwrap()])
        .args([
            "--tls-cert",
            &cert_file,
            "--tls-key",
            &key_file,
            "--tls-ca",
            &ca_file,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(bank.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(line.contains("--api-base https://127.0.0.1:"), "{line}");
    assert!(line.ends_with(&format!("--ca-file {ca_file}")), "{line}");
    let (before, rest) = line.split_once(" \"").unwrap();
    let (name, after) = rest.split_once("\" ").unwrap();
    let mut args: Vec<String> = before
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    args.push(name.to_owned());
    args.extend(after.split_whitespace().map(str::to_owned));
    let db = format!("sqlite://{}", dir.path().join("freshet.db").display());
    args.extend(["--database-url".to_owned(), db]);
    // Without the CA: the bank's certificate is not trusted.
    let untrusted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .take_while(|a| *a != "--ca-file")
        .chain(
            args.iter()
                .map(String::as_str)
                .skip_while(|a| *a != "--database-url"),
        )
        .collect();
    let refused = freshet(&untrusted);
    assert!(!refused.status.success());
    let added = freshet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let _ = bank.kill();
    let _ = bank.wait();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let printed: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert!(
        printed["tokenUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
}
