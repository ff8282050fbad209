//! `signet serve`: load and check the config, connect the store and backends, serve the API, and
//! shut down gracefully on SIGTERM or Ctrl-C.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{Failure, runtime};
use crate::app::AppState;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::config::store::StoreLocation;
use crate::keys::KeyRing;
use crate::log::anchor::{Anchor, FileAnchor};
use crate::log::{CheckpointSigner, Log, LogError};
use crate::oidc::Verifier;
use crate::session::SessionCache;

/// How often expired sessions are purged, and how long after expiry they are kept.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
const PURGE_AFTER_SECONDS: i64 = 24 * 3600;
/// Sessions whose immutable facts are kept in memory.
const SESSION_CACHE_CAPACITY: usize = 100_000;

/// Runs `signet serve --config PATH`.
pub fn run(path: &Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(Failure::usage)?;
    runtime()?.block_on(serve(config, false))
}

/// Runs `signet check-config --config PATH`.
pub fn check(path: &Path) -> Result<(), Failure> {
    Config::load(path).map_err(Failure::usage)?;
    println!("{}: ok", path.display());
    Ok(())
}

/// Builds the state and serves until a shutdown signal. `development` allows development
/// issuers (only `signet dev` sets it).
pub async fn serve(config: Config, development: bool) -> Result<(), Failure> {
    let (state, listener) = start(config, development).await?;
    serve_started(state, listener).await
}

/// Serves an already started daemon until a shutdown signal.
pub async fn serve_started(
    state: AppState,
    listener: tokio::net::TcpListener,
) -> Result<(), Failure> {
    let address = listener.local_addr().map_err(Failure::usage)?;
    // Scripts and tests read this line to learn the port when listening on port 0.
    println!("signet listening on http://{address}");
    tracing::info!(%address, "listening");
    #[cfg(feature = "bench-unlogged")]
    if let Some(mode) = crate::api::sign::unlogged::mode() {
        tracing::warn!(
            ?mode,
            "SIGNET_BENCH_UNLOGGED is set: signatures are NOT logged (benchmark build only)"
        );
    }
    let grace = state.config.server.shutdown_timeout.get();
    spawn_session_purger(state.clone());
    spawn_key_maintenance(state.clone());
    crate::api::serve(
        listener,
        crate::api::router(state),
        shutdown_signal(),
        grace,
    )
    .await
    .context("server failed")
    .map_err(Failure::usage)?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store, keys and issuers and binds the listener.
pub async fn start(
    config: Config,
    development: bool,
) -> Result<(AppState, tokio::net::TcpListener), Failure> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let Some(StoreLocation::Sqlite(path)) = config.store.location() else {
        return Err(Failure::usage(anyhow::anyhow!(
            "store.url: unsupported store"
        )));
    };
    let store = crate::store::open(&StoreLocation::Sqlite(path.clone()))
        .await
        .context("cannot open the store")
        .map_err(Failure::usage)?;
    let log = Log::start(Arc::clone(&store), &config.log.origin);
    let keys = KeyRing::open(&config, &store, &log, clock.as_ref())
        .await
        .context("cannot set up keys")
        .map_err(Failure::usage)?;
    let keys = Arc::new(keys);
    let signer: Arc<dyn CheckpointSigner> = Arc::new(
        keys.log_signer(&config.log.origin)
            .context("cannot set up the log key")
            .map_err(Failure::usage)?,
    );
    let anchor: Arc<dyn Anchor> = Arc::new(FileAnchor::beside(&path));
    // Sign a checkpoint now, so GET /v1/log/checkpoint always has one to serve. A stored log
    // that does not extend what was signed before stops checkpoints (and `/readyz`), not the
    // daemon: the operator can still read the log to investigate.
    if let Err(e) = log
        .checkpoint(signer.as_ref(), anchor.as_ref(), clock.as_ref())
        .await
    {
        match e {
            LogError::Inconsistent(reason) => {
                tracing::error!(reason = %reason, "refusing to sign checkpoints: the stored log is inconsistent with what was signed before")
            }
            other => {
                return Err(Failure::usage(
                    anyhow::Error::new(other).context("cannot sign a log checkpoint"),
                ));
            }
        }
    }
    log.spawn_checkpointer(
        Arc::clone(&signer),
        anchor,
        Arc::clone(&clock),
        config.log.checkpoint_interval.get(),
    );
    let verifier = Verifier::new(&config.issuers, development)
        .context("cannot set up OIDC verification")
        .map_err(Failure::usage)?;
    let address = config
        .server
        .listen_addr()
        .ok_or_else(|| Failure::usage(anyhow::anyhow!("server.listen is not an address")))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
        .map_err(Failure::usage)?;
    let state = AppState {
        config: Arc::new(config),
        verifier,
        store,
        keys,
        log_key: Arc::new(signer.verifier().clone()),
        log,
        clock,
        sessions: Arc::new(SessionCache::new(SESSION_CACHE_CAPACITY)),
    };
    Ok((state, listener))
}

/// How often due key work is looked for, and the store re-read for changes made elsewhere.
const KEY_MAINTENANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Scheduled rotations and retirements (due dates are in the store, so they survive restarts),
/// and key changes made by break-glass commands or other replicas picked up.
fn spawn_key_maintenance(state: AppState) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(KEY_MAINTENANCE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = state.keys.reload(&state.store).await {
                tracing::warn!(error = %e, "could not reload key versions");
                continue;
            }
            let context = crate::keys::KeyContext {
                store: &state.store,
                log: &state.log,
                clock: state.clock.as_ref(),
            };
            state.keys.run_due(&context).await;
        }
    });
}

fn spawn_session_purger(state: AppState) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PURGE_INTERVAL);
        loop {
            interval.tick().await;
            state.sessions.drop_expired(state.clock.now_unix());
            let before = state.clock.now_unix() - PURGE_AFTER_SECONDS;
            match state.store.purge_sessions(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "purged expired sessions"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
            }
        }
    });
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
