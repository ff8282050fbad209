//! The daemon, built in one place: [`App::start`] opens the store, connects the backends, loads
//! the keys, checks the log against its anchor, and runs the background tasks in one `JoinSet`
//! that [`App::shutdown`] ends. `signet serve`, `signet dev`, break-glass key changes and the
//! in-process tests all start it here; [`AppState`] is what a request sees, and
//! `api::router(state)` serves it.
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::Config;
use crate::config::store::StoreLocation;
use crate::keys::{KeyContext, KeyError, KeyRing, StartupRecovery};
use crate::log::anchor::{Anchor, FileAnchor};
use crate::log::recorder::{Logged, SignatureRecorder};
use crate::log::{CheckpointSigner, Log, LogError};
use crate::oidc::{OidcError, Verifier};
use crate::session::SessionCache;
use crate::store::{Store, StoreError};

/// How often expired sessions are purged, and how long after expiry they are kept.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
const PURGE_AFTER_SECONDS: i64 = 24 * 3600;
/// Sessions whose immutable facts are kept in memory.
const SESSION_CACHE_CAPACITY: usize = 100_000;
/// How often due key work is looked for, and the store re-read for changes made elsewhere.
const KEY_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// What the daemon is started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `signet serve`: production issuers only, checkpoints and background tasks running.
    Serve,
    /// `signet dev`: as `Serve`, and development issuers are accepted.
    Development,
    /// A break-glass key change beside (or instead of) a running daemon: store, log and keys
    /// only. It signs no checkpoint and runs no task; the daemon does both.
    BreakGlass,
}

/// Why the daemon could not start. Each names the part that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configured store is not one this build can open.
    #[error("store.url: unsupported store")]
    UnsupportedStore,
    /// The store could not be opened or migrated.
    #[error("cannot open the store: {0}")]
    Store(#[source] StoreError),
    /// A backend or a key could not be set up.
    #[error("cannot set up keys: {0}")]
    Keys(#[source] KeyError),
    /// The log key is missing or unusable.
    #[error("cannot set up the log key: {0}")]
    LogKey(#[source] KeyError),
    /// The first checkpoint could not be signed for a reason other than tampering.
    #[error("cannot sign a log checkpoint: {0}")]
    Checkpoint(#[source] LogError),
    /// OIDC verification could not be set up.
    #[error("cannot set up OIDC verification: {0}")]
    Oidc(#[source] OidcError),
}

/// Shared daemon state: everything a request needs, built once at start-up; no globals.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// ID token verification.
    pub verifier: Verifier,
    /// Sessions and key versions.
    pub store: Arc<dyn Store>,
    /// Keys and their backends.
    pub keys: Arc<KeyRing>,
    /// The tamper-evident log.
    pub log: Log,
    /// The log key as verifiers pin it (`GET /v1/log/vkey`).
    pub log_key: Arc<crate::note::VerifierKey>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Immutable session facts, to spare the signing path a store read.
    pub sessions: Arc<SessionCache>,
    /// How signatures reach the log (always the log outside benchmark builds).
    pub recorder: Arc<dyn SignatureRecorder>,
}

impl AppState {
    /// What key changes need: the store, the log and the clock.
    pub fn key_context(&self) -> KeyContext<'_> {
        KeyContext {
            store: &self.store,
            log: &self.log,
            clock: self.clock.as_ref(),
        }
    }
}

/// A started daemon and its background tasks.
#[derive(Debug)]
pub struct App {
    state: AppState,
    tasks: JoinSet<()>,
}

impl App {
    /// Builds the daemon from a validated config. Outside [`Mode::BreakGlass`] it signs a
    /// checkpoint at once (so `GET /v1/log/checkpoint` always has one) and starts the
    /// checkpointer, key maintenance and the session purger.
    pub async fn start(
        config: Config,
        clock: Arc<dyn Clock>,
        mode: Mode,
    ) -> Result<App, StartError> {
        let location = config
            .store
            .location()
            .ok_or(StartError::UnsupportedStore)?;
        let anchor: Arc<dyn Anchor> = match &location {
            StoreLocation::Sqlite(path) => Arc::new(FileAnchor::beside(path)),
        };
        let store = crate::store::open(&location)
            .await
            .map_err(StartError::Store)?;
        let log = Log::start(Arc::clone(&store), &config.log.origin);
        let recovery = match mode {
            Mode::BreakGlass => StartupRecovery::LeftOver,
            Mode::Serve | Mode::Development => StartupRecovery::Interrupted,
        };
        let keys = KeyRing::open(&config, &store, &log, clock.as_ref(), recovery)
            .await
            .map_err(StartError::Keys)?;
        let keys = Arc::new(keys);
        let signer: Arc<dyn CheckpointSigner> = Arc::new(
            keys.log_signer(&config.log.origin)
                .map_err(StartError::LogKey)?,
        );
        let verifier = Verifier::new(
            &config.issuers,
            mode == Mode::Development,
            Arc::clone(&clock),
        )
        .map_err(StartError::Oidc)?;
        let interval = config.log.checkpoint_interval.get();
        let state = AppState {
            config: Arc::new(config),
            verifier,
            store,
            keys,
            log_key: Arc::new(signer.verifier().clone()),
            log,
            clock,
            sessions: Arc::new(SessionCache::new(SESSION_CACHE_CAPACITY)),
            recorder: recorder(),
        };
        let mut tasks = JoinSet::new();
        if mode != Mode::BreakGlass {
            first_checkpoint(&state, signer.as_ref(), anchor.as_ref()).await?;
            tasks.spawn(state.log.run_checkpointer(
                signer,
                anchor,
                Arc::clone(&state.clock),
                interval,
            ));
            tasks.spawn(maintain_keys(state.clone()));
            tasks.spawn(purge_sessions(state.clone()));
        }
        Ok(App { state, tasks })
    }

    /// The state requests see.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Ends the background tasks and waits for them. A task stopped mid-checkpoint leaves the
    /// anchor as it was: it is replaced atomically.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The log, unless a benchmark build was started with `SIGNET_BENCH_UNLOGGED`.
fn recorder() -> Arc<dyn SignatureRecorder> {
    #[cfg(feature = "bench-unlogged")]
    if let Some(unlogged) = crate::log::recorder::unlogged::Unlogged::from_env() {
        tracing::warn!(
            ?unlogged,
            "SIGNET_BENCH_UNLOGGED is set: signatures are NOT logged (benchmark build only)"
        );
        return Arc::new(unlogged);
    }
    Arc::new(Logged)
}

/// Signs a checkpoint at start-up. A stored log that does not extend what was signed before
/// stops checkpoints (and `/readyz`), not the daemon: the operator can still read the log to
/// investigate.
async fn first_checkpoint(
    state: &AppState,
    signer: &dyn CheckpointSigner,
    anchor: &dyn Anchor,
) -> Result<(), StartError> {
    match state
        .log
        .checkpoint(signer, anchor, state.clock.as_ref())
        .await
    {
        Ok(_) => Ok(()),
        Err(LogError::Inconsistent(reason)) => {
            tracing::error!(reason = %reason, "refusing to sign checkpoints: the stored log is inconsistent with what was signed before");
            Ok(())
        }
        Err(other) => Err(StartError::Checkpoint(other)),
    }
}

/// Scheduled rotations and retirements (due dates are in the store, so they survive restarts),
/// and key changes made by break-glass commands or other replicas picked up.
async fn maintain_keys(state: AppState) {
    let mut interval = tokio::time::interval(KEY_MAINTENANCE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = state.keys.reload(&state.store).await {
            tracing::warn!(error = %e, "could not reload key versions");
            continue;
        }
        state.keys.run_due(&state.key_context()).await;
    }
}

/// Expired sessions leave the cache at once and the store a day later.
async fn purge_sessions(state: AppState) {
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
}
