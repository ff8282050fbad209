//! `AppState`: everything a request needs, built once at start-up and shared; no globals.
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::log::Log;
use crate::oidc::Verifier;
use crate::session::SessionCache;
use crate::store::Store;

/// Shared daemon state.
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
}
