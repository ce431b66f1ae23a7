//! `freshet`: the one binary. Parses the command line, then runs the subcommand.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRef;
use clap::Parser;
use server::bank::directory::Directory;
use server::bank::openbanking::OpenBankingBank;
use server::bank::sandbox::SandboxBank;
use server::bank::sandbox::in_process::SandboxConnector;
use server::clock::Clock;
use server::config::{
    BankAddArgs, BankCommand, Cli, Command, DatabaseArgs, KeysCommand, PartnerCommand,
    PortalUserCommand, ServeArgs,
};
use server::ops::Health;
use server::ops::routes::OpsState;
use server::secrets::Keyring;
use server::services::Services;
use server::services::banks;
use server::store::Store;
use server::webhooks::Deliverer;
use server::worker::Worker;
use server::{AppState, demo, router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    server::ops::logging::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::SandboxBank {
            bind,
            redirect_uris,
            client_secret_file,
            tls_cert,
            tls_key,
            tls_ca,
        } => {
            let bank = Arc::new(SandboxBank::new(Arc::new(Clock::default())));
            // freshet's client at this bank, and the command that registers the bank with
            // freshet (the secret goes to a file, never to the terminal).
            let mut secret = [0_u8; 24];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&client_secret_file, &secret)?;
            bank.authority
                .register_as("freshet", &secret, redirect_uris);
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => {
                    Some(server::tls::config(cert, key).map_err(|e| anyhow::anyhow!("{e}"))?)
                }
                _ => None,
            };
            let base = match tls {
                Some(config) => {
                    let listener = tokio::net::TcpListener::bind(bind)
                        .await
                        .with_context(|| format!("binding the sandbox bank to {bind}"))?;
                    let addr = listener
                        .local_addr()
                        .context("reading the bank's address")?;
                    let router = server::bank::sandbox::router(Arc::clone(&bank));
                    tokio::spawn(server::tls::serve(listener, router, config));
                    format!("https://{addr}")
                }
                None => format!(
                    "http://{}",
                    serve_sandbox_bank(Arc::clone(&bank), bind).await?
                ),
            };
            bank.set_issuer(&base);
            tracing::info!("sandbox bank listening on {base}");
            let ca = tls_ca
                .map(|ca| format!(" --ca-file {}", ca.display()))
                .unwrap_or_default();
            println!(
                "freshet bank add --id sandbox-bank --name \"freshet Sandbox Bank\" --api-base {base}/open-banking/v3.1/aisp --discovery-url {base}/.well-known/openid-configuration --client-id freshet --client-secret-file {}{ca}",
                client_secret_file.display()
            );
            shutdown_signal().await;
            Ok(())
        }
        Command::Bank(BankCommand::Add(args)) => add_bank(*args).await,
        Command::Bank(BankCommand::List(db)) => {
            let store = open(&db).await?;
            for bank in store.banks().list().await? {
                println!(
                    "{}",
                    serde_json::json!({
                        "bankId": bank.id, "name": bank.name, "apiBase": bank.api_base,
                        "issuer": bank.issuer, "authorizationUrl": bank.authorization_url,
                        "tokenUrl": bank.token_url, "clientId": bank.client_id,
                        "privateCa": bank.ca_pem.is_some(), "maxInFlight": bank.max_in_flight,
                        "requestsPerSecond": bank.requests_per_second,
                        "updatedAt": freshet_rules::format_timestamp(bank.updated_at),
                    })
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate(db)) => {
            let store = open(&db).await?;
            let keys = keyring(&store)?;
            let keys = if std::env::var_os(server::secrets::MASTER_KEY_ENV).is_some() {
                keys
            } else {
                keys.with_new_key()?
            };
            let sealed = banks::reseal_secrets(&store, &keys)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}",
                serde_json::json!({ "keyId": keys.current_key_id(), "resealed": sealed })
            );
            Ok(())
        }
        Command::Migrate(db) => {
            open(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Partner(PartnerCommand::Create {
            name,
            marketplace_only,
            db,
        }) => {
            let store = open(&db).await?;
            let created = store
                .partners()
                .create(&name, !marketplace_only, Clock::default().now())
                .await
                .context("creating the partner")?;
            println!(
                "{}",
                serde_json::to_string(&created).context("printing the partner")?
            );
            Ok(())
        }
        Command::PortalUser(PortalUserCommand::Create { partner, email, db }) => {
            let mut password = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let store = open(&db).await?;
            let id = store
                .portal_users()
                .create(partner, &email, password, Clock::default().now())
                .await?;
            println!(
                "{}",
                serde_json::json!({ "portalUserId": id, "partnerId": partner, "email": email.trim() })
            );
            Ok(())
        }
    }
}

/// `freshet bank add`: reads the secret and the CA, registers, prints the bank.
async fn add_bank(args: BankAddArgs) -> anyhow::Result<()> {
    let store = open(&args.db).await?;
    let keys = keyring(&store)?;
    let secret = std::fs::read_to_string(&args.client_secret_file)
        .with_context(|| format!("reading {}", args.client_secret_file.display()))?;
    let ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let endpoints = match (args.discovery_url, args.authorization_url, args.token_url) {
        (Some(url), _, _) => banks::Endpoints::Discovery(url),
        (None, Some(authorization_url), Some(token_url)) => banks::Endpoints::Given {
            authorization_url,
            token_url,
        },
        _ => anyhow::bail!("give --discovery-url, or --authorization-url and --token-url"),
    };
    let registration = banks::BankRegistration {
        id: args.id.clone(),
        name: args.name,
        api_base: args.api_base,
        endpoints,
        client_id: args.client_id,
        client_secret: secret.trim().to_owned(),
        ca_pem,
        max_in_flight: args.max_in_flight,
        requests_per_second: args.requests_per_second,
    };
    let new = banks::register(&store, &keys, registration, Clock::default().now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bank = store
        .banks()
        .get(&args.id)
        .await?
        .context("the bank just registered is not there")?;
    println!(
        "{}",
        serde_json::json!({
            "bankId": bank.id, "name": bank.name, "created": new,
            "authorizationUrl": bank.authorization_url, "tokenUrl": bank.token_url,
        })
    );
    Ok(())
}

/// Writes `text` to a file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode on open: make it the owner's alone.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// The keys that seal secrets at rest. Replicas on PostgreSQL take them from the
/// environment: a key file beside the database is SQLite's, and a key of the process's own
/// would seal tokens that no other replica, nor this one restarted, could open.
fn keyring(store: &Store) -> anyhow::Result<Keyring> {
    use server::secrets::MASTER_KEY_ENV;
    if store.backend() == server::store::Backend::Postgres
        && std::env::var_os(MASTER_KEY_ENV).is_none()
    {
        anyhow::bail!(
            "on PostgreSQL every replica seals secrets with the same key: set {MASTER_KEY_ENV} \
             (32 random bytes, base64: `openssl rand -base64 32`)"
        );
    }
    Ok(Keyring::load(store.file())?)
}

/// Opens the database and applies pending migrations.
async fn open(db: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = Store::open(&db.database_url)
        .await
        .with_context(|| format!("opening {}", db.database_url))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = open(&args.db).await?;
    // On SQLite the one process that writes the file must also do the work.
    if args.api_only && store.backend() != server::store::Backend::Postgres {
        anyhow::bail!(
            "--api-only needs PostgreSQL: on SQLite one `freshet serve` serves and runs the engine"
        );
    }
    // Created on first start (a key file beside the database) when not given.
    let keys = keyring(&store)?;
    tracing::info!(
        key = keys.current_key_id(),
        "secrets at rest sealed with this key"
    );
    let clock = Arc::new(Clock::default());
    let policy = args.policy();
    let sandbox = args.sandbox || args.demo;
    // The sandbox bank lives on the server's (shiftable) clock, on its own loopback port.
    let bank = sandbox.then(|| Arc::new(SandboxBank::new(Arc::clone(&clock))));
    let mut services = Services::new(store.clone(), Arc::clone(&clock), policy, sandbox)
        .with_webhook_targets(args.webhook_targets())
        .with_sign_ins_per_client(args.sign_ins_per_client_per_minute)
        .with_limits(args.limits())
        .with_api_rate(args.api_rate())
        .with_keys(keys.clone());
    if let Some(bank) = &bank {
        services = services.with_sandbox_bank(Arc::clone(bank));
    }
    // The banks' connectors, shared by the workers and the connection journey.
    let directory = Directory::default();
    services = services.with_bank_directory(directory.clone());
    for registered in store.banks().list().await? {
        let name = registered.name.clone();
        let connector =
            OpenBankingBank::new(registered, keys.clone(), store.clone(), Arc::clone(&clock))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        services.add_open_banking(&name, Arc::new(connector));
    }
    let services = Arc::new(services);
    // Bound first: the journey's callback (freshet's public URL) is known before any bank
    // is told where to send users back.
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    services.set_public_url(
        args.public_url
            .as_deref()
            .unwrap_or(&format!("http://{bound}")),
    );
    if args.insecure_webhook_targets {
        tracing::warn!(
            "--insecure-webhook-targets: webhooks may go to http and private addresses (development only)"
        );
    }
    let roots = match &args.webhook_ca_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificates", path.display()))?
        }
        None => Vec::new(),
    };
    if let Some(bank) = &bank {
        let addr = serve_sandbox_bank(Arc::clone(bank), args.sandbox_bank_bind).await?;
        tracing::info!("sandbox bank listening on http://{addr}");
        // Reached over HTTP like any bank, freshet one of its OAuth clients.
        let (connector, oauth) = SandboxConnector::register(
            bank,
            &format!("http://{addr}"),
            &services.callback_url(),
            keys.clone(),
            store.clone(),
            Arc::clone(&clock),
        )
        .map_err(|e| anyhow::anyhow!("registering the sandbox bank: {e}"))?;
        services.add_sandbox_bank(connector, oauth);
    }
    let health = Health::default();
    if args.api_only {
        tracing::info!(
            "--api-only: no refresh workers, scheduler, webhook deliverer or retention here; \
             the other replicas on the database run them"
        );
    } else {
        health.watch(
            "webhook deliverer",
            Deliverer::with_roots(
                store.clone(),
                Arc::clone(&clock),
                args.webhook_targets(),
                args.delivery(),
                roots,
            )
            .map_err(|e| anyhow::anyhow!("building the webhook client: {e}"))?
            .spawn(),
        );
        health.watch(
            "retention",
            server::retention::spawn(store.clone(), Arc::clone(&clock)),
        );
        // The engine: the workers fetch each account from its own bank through the
        // directory, the scheduler queues what is due.
        let mut worker = Worker::new(
            store.clone(),
            Arc::new(directory.clone()),
            Arc::clone(&clock),
        );
        worker.lease = chrono::TimeDelta::seconds(args.worker_lease_seconds);
        if sandbox {
            worker.transactions_per_partner =
                Some(args.limits().sandbox_stored_transactions_per_partner);
        }
        tracing::info!(banks = ?directory, "refresh workers fetching from these banks");
        health.watch("refresh workers", worker.spawn());
        health.watch(
            "scheduler",
            server::scheduler::spawn(
                store.clone(),
                Arc::clone(&clock),
                chrono::TimeDelta::seconds(args.scheduled_refresh_seconds),
            ),
        );
    }
    if args.demo {
        // With the engine running: the demo's users connect through the journey and their
        // first fetches land.
        seed_demo(&services, &args).await?;
    }
    let state = AppState::new(&args.site_root, services)
        .with_trusted_client_header(args.trusted_client_ip_header.clone())
        .with_health(health.clone())
        .with_metrics_token(args.metrics_token.as_deref());
    if let Some(bind) = args.metrics_bind {
        serve_metrics(bind, OpsState::from_ref(&state)).await?;
    }
    if state.leptos.output_name.as_ref() == "freshet" {
        tracing::warn!(site_root = %args.site_root.display(), "no portal wasm found: pages will render but not hydrate (run scripts/run)");
    }
    tracing::info!(sandbox, "freshet listening on http://{bound}");
    // Graceful shutdown waits for open connections; event streams never end by themselves,
    // so after the signal they get five seconds, then the server stops anyway.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = Arc::clone(&stopping);
    // The peer's address reaches the handlers (sign-in limits per client).
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        health.stopping();
        signalled.notify_waiters();
    });
    tokio::select! {
        served = graceful => served.context("serving HTTP")?,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        } => tracing::warn!("connections still open 5 s after the shutdown signal (event streams): closing them"),
    }
    store.close().await;
    Ok(())
}

/// Seeds the demo on an empty database and prints how to use it.
async fn seed_demo(services: &Services, args: &ServeArgs) -> anyhow::Result<()> {
    let Some(demo) = demo::seed_if_empty(services)
        .await
        .context("seeding the demo")?
    else {
        println!(
            "demo: the database already has data; its API key was printed when it was first seeded \
             (start from an empty database to see a new one)"
        );
        return Ok(());
    };
    println!("demo partner created: {}", demo.partner.partner_id);
    println!("  API key (shown once): {}", demo.partner.api_key);
    for (label, user_id) in &demo.users {
        println!("  user {user_id}  {label}");
    }
    println!(
        "  portal: http://{}/  sign in as {} with password {} (shown once)",
        args.bind, demo.portal_user.0, demo.portal_user.1
    );
    println!(
        "  try: curl -s -X POST -H 'x-api-key: {}' http://{}/v1/users/{}/accounts-refresh",
        demo.partner.api_key, args.bind, demo.users[0].1
    );
    Ok(())
}

/// Serves `/metrics` (and the health routes) on their own address, in the background.
async fn serve_metrics(bind: std::net::SocketAddr, state: OpsState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the metrics address {bind}"))?;
    let addr = listener
        .local_addr()
        .context("reading the metrics address")?;
    tracing::info!("metrics listening on http://{addr}");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, server::ops::routes::metrics_listener(state)).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// Starts the sandbox bank's HTTP service in the background; returns where it listens.
async fn serve_sandbox_bank(
    bank: Arc<SandboxBank>,
    bind: std::net::SocketAddr,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the sandbox bank to {bind}"))?;
    let addr = listener
        .local_addr()
        .context("reading the sandbox bank's address")?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, server::bank::sandbox::router(bank)).await {
            tracing::error!(error = %e, "the sandbox bank stopped");
        }
    });
    Ok(addr)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
}
