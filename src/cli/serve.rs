//! `signet serve`: load and check the config, start the daemon, serve the API, and shut down
//! gracefully on SIGTERM or Ctrl-C.
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::{Failure, runtime};
use crate::app::{App, Mode};
use crate::clock::SystemClock;
use crate::config::Config;

/// Runs `signet serve --config PATH`.
pub fn run(path: &Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(Failure::usage)?;
    runtime()?.block_on(async move {
        let (app, listener) = start(config, Mode::Serve).await?;
        serve(app, listener).await
    })
}

/// Runs `signet check-config --config PATH`.
pub fn check(path: &Path) -> Result<(), Failure> {
    Config::load(path).map_err(Failure::usage)?;
    println!("{}: ok", path.display());
    Ok(())
}

/// Starts the daemon on the system clock and binds its listener.
pub async fn start(config: Config, mode: Mode) -> Result<(App, tokio::net::TcpListener), Failure> {
    let address = config
        .server
        .listen_addr()
        .ok_or_else(|| Failure::usage(anyhow::anyhow!("server.listen is not an address")))?;
    let app = App::start(config, Arc::new(SystemClock), mode)
        .await
        .map_err(Failure::usage)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
        .map_err(Failure::usage)?;
    Ok((app, listener))
}

/// Serves a started daemon until a shutdown signal, then stops its tasks.
pub async fn serve(app: App, listener: tokio::net::TcpListener) -> Result<(), Failure> {
    let address = listener.local_addr().map_err(Failure::usage)?;
    // Scripts and tests read this line to learn the port when listening on port 0.
    println!("signet listening on http://{address}");
    tracing::info!(%address, "listening");
    let grace = app.state().config.server.shutdown_timeout.get();
    let router = crate::api::router(app.state().clone());
    let served = crate::api::serve(listener, router, shutdown_signal(), grace).await;
    app.shutdown().await;
    served.context("server failed").map_err(Failure::usage)?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
