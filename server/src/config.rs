//! The command line and its environment variables: typed, validated before anything binds.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use freshet_rules::{DEFAULT_REFRESH_INTERVAL_SECONDS, RefreshPolicy};

use crate::services::{ApiRate, Limits};

/// freshet: on-demand Open Banking refreshes.
#[derive(Debug, Parser)]
#[command(name = "freshet", version, about)]
pub struct Cli {
    /// How log lines are written: `json` (one object per line) or `text`; default text on a
    /// terminal, JSON otherwise. `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, env = "FRESHET_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::ops::logging::LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the partner API and the portal.
    Serve(ServeArgs),
    /// Manage partners.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Manage portal users (partner staff).
    #[command(subcommand, name = "portal-user")]
    PortalUser(PortalUserCommand),
    /// Apply the database migrations, then exit.
    Migrate(DatabaseArgs),
    /// Manage the banks freshet fetches from.
    #[command(subcommand)]
    Bank(BankCommand),
    /// Manage the keys that seal secrets at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve the sandbox bank alone (UK Open Banking shape; `serve --sandbox` starts one itself).
    SandboxBank {
        /// The address to listen on.
        #[arg(
            long,
            env = "FRESHET_SANDBOX_BANK_BIND",
            default_value = "127.0.0.1:4010"
        )]
        bind: SocketAddr,
        /// Where freshet's connection journey comes back to (its callback), for the client
        /// registered for freshet at start; repeat for several.
        #[arg(
            long = "redirect-uri",
            env = "FRESHET_SANDBOX_BANK_REDIRECT_URIS",
            value_delimiter = ',',
            default_value = "http://127.0.0.1:3000/connect/callback"
        )]
        redirect_uris: Vec<String>,
        /// Where to write the client secret of that client (mode 0600), for `freshet bank add`.
        #[arg(
            long,
            env = "FRESHET_SANDBOX_BANK_SECRET_FILE",
            default_value = "sandbox-bank.secret"
        )]
        client_secret_file: PathBuf,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long, env = "FRESHET_SANDBOX_BANK_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "FRESHET_SANDBOX_BANK_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The CA that signed --tls-cert, named in the printed `freshet bank add` command
        /// (`--ca-file`), for a private CA.
        #[arg(long, env = "FRESHET_SANDBOX_BANK_TLS_CA", requires = "tls_cert")]
        tls_ca: Option<PathBuf>,
    },
}

/// `freshet bank ...`.
#[derive(Debug, Subcommand)]
pub enum BankCommand {
    /// Register a bank, or update its registration (same --id); prints it (never the secret).
    Add(Box<BankAddArgs>),
    /// List the registered banks, one JSON object a line (never a secret).
    List(DatabaseArgs),
}

/// `freshet bank add`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("endpoints").required(true).args(["discovery_url", "authorization_url"])))]
pub struct BankAddArgs {
    /// The bank's id in freshet (1–64 of a-z, 0-9, '-').
    #[arg(long)]
    pub id: String,
    /// Its name, as partners and end users see it.
    #[arg(long)]
    pub name: String,
    /// The base URL of its AIS API (e.g. `https://bank.example/open-banking/v3.1/aisp`).
    #[arg(long)]
    pub api_base: String,
    /// Its OpenID Provider Configuration (the OAuth endpoints are read from it).
    #[arg(long)]
    pub discovery_url: Option<String>,
    /// Its OAuth authorization endpoint (with --token-url, instead of --discovery-url).
    #[arg(long, requires = "token_url")]
    pub authorization_url: Option<String>,
    /// Its OAuth token endpoint.
    #[arg(long, requires = "authorization_url")]
    pub token_url: Option<String>,
    /// freshet's client id at the bank.
    #[arg(long)]
    pub client_id: String,
    /// A file holding freshet's client secret at the bank (read, sealed, stored; never printed).
    #[arg(long)]
    pub client_secret_file: PathBuf,
    /// A PEM file of the private CA the bank's certificates chain to.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Requests in flight to the bank at once, across the server.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Requests a second to the bank, across the server.
    #[arg(long, default_value_t = 10.0)]
    pub requests_per_second: f64,
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `freshet keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Seal every secret with a new key: with the key file, a new key is added to it; with
    /// FRESHET_MASTER_KEY, set the new key there and the old one in
    /// FRESHET_RETIRED_MASTER_KEYS first.
    Rotate(DatabaseArgs),
}

/// `freshet portal-user ...`.
#[derive(Debug, Subcommand)]
pub enum PortalUserCommand {
    /// Create a portal user; the password is read from standard input.
    Create {
        /// The partner whose staff the user is.
        #[arg(long, env = "FRESHET_PARTNER_ID")]
        partner: uuid::Uuid,
        /// The sign-in email.
        #[arg(long, env = "FRESHET_EMAIL")]
        email: String,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// Where the database is; every subcommand takes it.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// The database: `sqlite://FILE` (created when missing), or `postgres://USER@HOST/DB`
    /// (several replicas may share it; `?max_connections=N` sizes this replica's pool,
    /// 16 by default).
    #[arg(
        long,
        env = "FRESHET_DATABASE_URL",
        default_value = "sqlite://freshet.db"
    )]
    pub database_url: String,
}

/// `freshet partner ...`.
#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Create a partner and print `{"partnerId","apiKey"}` on one line.
    Create {
        /// The partner's name.
        #[arg(long, env = "FRESHET_PARTNER_NAME")]
        name: String,
        /// Not enrolled in the direct connection journey (marketplace users only).
        #[arg(long, env = "FRESHET_MARKETPLACE_ONLY")]
        marketplace_only: bool,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// `freshet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Serve `/sandbox/v1` (sandbox users, accounts, clock).
    #[arg(long, env = "FRESHET_SANDBOX")]
    pub sandbox: bool,
    /// On an empty database, create a demo partner, users and accounts (implies --sandbox).
    #[arg(long, env = "FRESHET_DEMO")]
    pub demo: bool,
    /// Serve HTTP only (API, portal, event streams): no refresh workers, scheduler, webhook
    /// deliverer or retention in this process. PostgreSQL only: the other replicas on the
    /// database do that work, woken by this one's commits.
    #[arg(long, env = "FRESHET_API_ONLY", conflicts_with_all = ["sandbox", "demo"])]
    pub api_only: bool,
    /// How old an account's data may get before a scheduled refresh fetches it, in seconds.
    #[arg(long, env = "FRESHET_SCHEDULED_REFRESH_SECONDS", default_value_t = 6 * 3600, value_parser = clap::value_parser!(i64).range(60..))]
    pub scheduled_refresh_seconds: i64,
    /// How long a worker's claim on an account lasts before another may take it (after a crash).
    #[arg(long, env = "FRESHET_WORKER_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..))]
    pub worker_lease_seconds: i64,
    /// Where the sandbox bank of a sandbox server listens (port 0: any free port).
    #[arg(long, env = "FRESHET_SANDBOX_BANK_BIND", default_value = "127.0.0.1:0")]
    pub sandbox_bank_bind: SocketAddr,
    /// Allow http and loopback/private webhook targets (local development and tests only).
    #[arg(long, env = "FRESHET_INSECURE_WEBHOOK_TARGETS")]
    pub insecure_webhook_targets: bool,
    /// Also trust the CA certificates of this PEM file for webhook targets (receivers behind a private CA).
    #[arg(long, env = "FRESHET_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// How long a webhook delivery's claim lasts before another process may send it (after a crash).
    #[arg(long, env = "FRESHET_WEBHOOK_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(i64).range(6..))]
    pub webhook_lease_seconds: i64,
    /// Webhook deliveries in flight at once, in all.
    #[arg(long, env = "FRESHET_WEBHOOK_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub webhook_concurrency: u16,
    /// Webhook deliveries in flight at once to one subscription.
    #[arg(long, env = "FRESHET_WEBHOOK_PER_SUBSCRIPTION", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub webhook_per_subscription: u16,
    /// Webhook deliveries in flight at once for one partner (its share of the pool).
    #[arg(long, env = "FRESHET_WEBHOOK_PER_PARTNER", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub webhook_per_partner: u16,
    /// Behind a reverse proxy: the header it puts the client's address in (e.g.
    /// `x-forwarded-for` or `x-real-ip`; of a list the last entry counts, the one the proxy
    /// added). Only set this when every request reaches freshet through that proxy: sign-in
    /// limits per client trust it.
    #[arg(long, env = "FRESHET_TRUSTED_CLIENT_IP_HEADER", value_parser = parse_header_name)]
    pub trusted_client_ip_header: Option<String>,
    /// Portal sign-in attempts one client address may make per minute (then refused unchecked).
    #[arg(long, env = "FRESHET_SIGN_INS_PER_CLIENT_PER_MINUTE",
          default_value_t = crate::services::sessions::PER_CLIENT_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sign_ins_per_client_per_minute: u32,
    /// API requests one partner may make a second, on average (0: no limit). Past it: 429.
    #[arg(long, env = "FRESHET_API_REQUESTS_PER_SECOND", default_value_t = 100)]
    pub api_requests_per_second: u32,
    /// API requests one partner may make at once after a quiet spell (the bucket's size).
    #[arg(long, env = "FRESHET_API_BURST", default_value_t = 200)]
    pub api_burst: u32,
    /// Webhook subscriptions one partner may hold.
    #[arg(long, env = "FRESHET_MAX_SUBSCRIPTIONS_PER_PARTNER", default_value_t = Limits::default().subscriptions_per_partner,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscriptions_per_partner: u32,
    /// Sandbox: users one partner may hold.
    #[arg(long, env = "FRESHET_SANDBOX_MAX_USERS_PER_PARTNER", default_value_t = Limits::default().sandbox_users_per_partner)]
    pub sandbox_max_users_per_partner: u32,
    /// Sandbox: accounts one user may hold.
    #[arg(long, env = "FRESHET_SANDBOX_MAX_ACCOUNTS_PER_USER", default_value_t = Limits::default().sandbox_accounts_per_user)]
    pub sandbox_max_accounts_per_user: u32,
    /// Sandbox: transactions of history one account may start with.
    #[arg(long, env = "FRESHET_SANDBOX_MAX_TRANSACTIONS_PER_ACCOUNT", default_value_t = Limits::default().sandbox_transactions_per_account)]
    pub sandbox_max_transactions_per_account: u32,
    /// Sandbox: transactions of history one partner's users may hold in all.
    #[arg(long, env = "FRESHET_SANDBOX_MAX_TRANSACTIONS_PER_PARTNER", default_value_t = Limits::default().sandbox_transactions_per_partner)]
    pub sandbox_max_transactions_per_partner: u32,
    /// Sandbox: transactions one partner's users may hold in all, fetched ones included
    /// (a fetch past it stores nothing and fails with SANDBOX_QUOTA_EXCEEDED).
    #[arg(long, env = "FRESHET_SANDBOX_MAX_STORED_TRANSACTIONS_PER_PARTNER", default_value_t = Limits::default().sandbox_stored_transactions_per_partner)]
    pub sandbox_max_stored_transactions_per_partner: u32,
    /// The address to listen on.
    #[arg(long, env = "FRESHET_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,
    /// A second address serving `/metrics` (Prometheus text format), `/healthz` and
    /// `/readyz` without any token: bind it where only the scraper reaches.
    #[arg(long, env = "FRESHET_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Serves `/metrics` on the main address too, to `Authorization: Bearer <token>`.
    #[arg(long, env = "FRESHET_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// The base URL browsers reach this server at (the connection journey's pages and the
    /// callback banks send users back to); default `http://` and the bound address.
    #[arg(long, env = "FRESHET_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The folder holding the portal's built assets (`pkg/` inside it).
    #[arg(long, env = "FRESHET_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// How long after a refresh an account counts as fresh, in seconds.
    #[arg(long, env = "FRESHET_REFRESH_INTERVAL_SECONDS", default_value_t = DEFAULT_REFRESH_INTERVAL_SECONDS,
          value_parser = parse_interval)]
    pub refresh_interval_seconds: i64,
}

impl ServeArgs {
    /// Where webhook targets may point.
    pub fn webhook_targets(&self) -> crate::webhooks::TargetPolicy {
        if self.insecure_webhook_targets {
            crate::webhooks::TargetPolicy::insecure()
        } else {
            crate::webhooks::TargetPolicy::secure()
        }
    }

    /// How webhooks are delivered.
    pub fn delivery(&self) -> crate::webhooks::DeliveryConfig {
        crate::webhooks::DeliveryConfig {
            lease: chrono::TimeDelta::seconds(self.webhook_lease_seconds),
            concurrency: usize::from(self.webhook_concurrency),
            per_subscription: usize::from(self.webhook_per_subscription),
            per_partner: usize::from(self.webhook_per_partner),
            ..crate::webhooks::DeliveryConfig::default()
        }
    }

    /// Each partner's share of the API, if limited.
    pub fn api_rate(&self) -> Option<ApiRate> {
        (self.api_requests_per_second > 0)
            .then(|| ApiRate::new(self.api_requests_per_second, self.api_burst))
    }

    /// Every partner's quotas.
    pub fn limits(&self) -> Limits {
        Limits {
            subscriptions_per_partner: self.max_subscriptions_per_partner,
            sandbox_users_per_partner: self.sandbox_max_users_per_partner,
            sandbox_accounts_per_user: self.sandbox_max_accounts_per_user,
            sandbox_transactions_per_account: self.sandbox_max_transactions_per_account,
            sandbox_transactions_per_partner: self.sandbox_max_transactions_per_partner,
            sandbox_stored_transactions_per_partner: self
                .sandbox_max_stored_transactions_per_partner,
        }
    }

    /// The refresh policy these arguments ask for (validated when parsing).
    pub fn policy(&self) -> RefreshPolicy {
        RefreshPolicy::from_seconds(self.refresh_interval_seconds).unwrap_or_default()
    }
}

fn parse_header_name(text: &str) -> Result<String, String> {
    axum::http::HeaderName::from_bytes(text.trim().as_bytes())
        .map(|h| h.as_str().to_owned())
        .map_err(|e| format!("not a header name: {e}"))
}

fn parse_interval(text: &str) -> Result<i64, String> {
    let seconds: i64 = text.parse().map_err(|e| format!("{e}"))?;
    RefreshPolicy::from_seconds(seconds).map_err(|e| e.to_string())?;
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_interval_is_refused_before_anything_starts() {
        let err = Cli::try_parse_from(["freshet", "serve", "--refresh-interval-seconds", "0"])
            .unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }

    #[test]
    fn serve_defaults_to_loopback_port_3000_and_twenty_minutes() {
        let Command::Serve(args) = Cli::try_parse_from(["freshet", "serve"]).unwrap().command
        else {
            panic!("`serve` parses as serve");
        };
        assert_eq!(args.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(args.db.database_url, "sqlite://freshet.db");
        assert_eq!(args.policy(), RefreshPolicy::default());
    }
}
