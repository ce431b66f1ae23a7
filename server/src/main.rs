//! `freshet`: the one binary. Parses the command line, then runs the subcommand.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use server::clock::Clock;
use server::config::{Cli, Command, ServeArgs};
use server::portal::SamplePortal;
use server::{AppState, router};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let clock = Arc::new(Clock::default());
    let state = AppState {
        leptos: AppState::leptos_options(&args.site_root),
        portal: Arc::new(SamplePortal::new(clock, args.policy())),
    };
    if !args.site_root.join("pkg").join("freshet_bg.wasm").exists() {
        tracing::warn!(site_root = %args.site_root.display(), "no portal wasm found: pages will render but not hydrate (run scripts/run)");
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(
        "freshet listening on http://{}",
        listener.local_addr().context("reading the bound address")?
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
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
