//! Logical keys: each has versions (one `active`, older ones `verify-only`, then `retired`) kept
//! in the store, each version a key inside a backend. Builds the published JWKS.
//!
//! This file holds the key ring (opening it, reading it, the JWKS); `change` rotates, retires
//! and revokes; `schedule` does due work; `load` finds version 1 in its backend; `log_signer`
//! lends the log key to the log.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::algorithm::Algorithm;
use crate::backend::{BackendError, KeySpec, SigningBackend};
use crate::clock::Clock;
use crate::config::{Config, KeyConfig};
use crate::jwks::{self, Jwk, JwkError, PublishedJwks};
use crate::log::event::{Actor, LogEvent};
use crate::log::{Log, LogError};
use crate::store::{AppendOutcome, KeyChange, KeyState, KeyVersionRecord, Store, StoreError};

mod change;
mod load;
mod log_signer;
mod schedule;

use change::PendingVersions;
pub use log_signer::LogKeySigner;
use schedule::Backoff;

/// Why keys could not be set up or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key of that name is configured.
    #[error("no key named {0}")]
    UnknownKey(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recording a key event in the log failed.
    #[error("cannot log a key event: {0}")]
    Log(#[from] LogError),
    /// A backend's public key is not usable as a JWK.
    #[error("key {key}: {source}")]
    PublicKey {
        /// The logical key.
        key: String,
        /// Why.
        source: JwkError,
    },
    /// Another rotation or retirement got there first, or is under way.
    #[error("key {key}: {reason}")]
    Conflict {
        /// The logical key.
        key: String,
        /// What is in the way.
        reason: String,
    },
    /// The request names a version that cannot take this change.
    #[error("key {key}: {reason}")]
    BadVersion {
        /// The logical key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The log key is a fixed role: never rotated, retired or revoked through signet.
    #[error(
        "key {0} is the log key: it is never rotated, retired or revoked through signet (a new \
         log key is a new log with a new origin)"
    )]
    LogKey(String),
    /// What the store recorded no longer matches the config or the backend.
    #[error("key {key}: {reason}")]
    Inconsistent {
        /// The logical key.
        key: String,
        /// What differs.
        reason: String,
    },
}

/// The version that signs, as the signing path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveVersion {
    /// Version number.
    pub version: u32,
    /// RFC 7638 thumbprint.
    pub key_id: String,
    /// The backend's reference.
    pub backend_ref: String,
}

impl ActiveVersion {
    fn of(version: &KeyVersionRecord) -> Self {
        ActiveVersion {
            version: version.version,
            key_id: version.key_id.clone(),
            backend_ref: version.backend_ref.clone(),
        }
    }
}

/// One logical key and its backend.
#[derive(Debug)]
pub struct ManagedKey {
    /// Its configuration.
    pub config: KeyConfig,
    /// The backend holding its versions.
    pub backend: Arc<dyn SigningBackend>,
    versions: RwLock<Vec<KeyVersionRecord>>,
    /// Orders signatures and rotations in the log: a signature holds it (shared) from reading
    /// the active version until its log entry is committed; an activation holds it alone. So no
    /// signature names a version that was not active at its place in the log.
    pub gate: tokio::sync::RwLock<()>,
    /// One rotation or retirement of this key at a time in this process.
    changing: tokio::sync::Mutex<()>,
    /// When a scheduled rotation (or settling a left-over one) may next be tried after failures.
    rotation_backoff: std::sync::Mutex<Backoff>,
    /// When a scheduled retirement may next be tried after failures.
    retirement_backoff: std::sync::Mutex<Backoff>,
}

impl ManagedKey {
    /// What `read` takes from the active version (the newest, should there be two).
    fn with_active<T>(&self, read: impl FnOnce(&KeyVersionRecord) -> T) -> Option<T> {
        let versions = self.versions.read().ok()?;
        versions
            .iter()
            .rev()
            .find(|v| v.state == KeyState::Active)
            .map(read)
    }

    /// The active version.
    pub fn active(&self) -> Option<ActiveVersion> {
        self.with_active(ActiveVersion::of)
    }

    /// The active version and its SPKI public key.
    pub fn active_with_public_key(&self) -> Option<(ActiveVersion, Vec<u8>)> {
        self.with_active(|v| (ActiveVersion::of(v), v.public_key_spki.clone()))
    }

    /// The active version's full record.
    pub fn active_record(&self) -> Option<KeyVersionRecord> {
        self.with_active(Clone::clone)
    }

    /// The backend's description of this key.
    pub fn spec(&self) -> KeySpec {
        KeySpec {
            key_name: self.config.name.clone(),
            backend_key: self.config.backend_key().to_string(),
            algorithm: self.config.algorithm,
            rsa_bits: self.config.rsa_bits,
        }
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> Vec<KeyVersionRecord> {
        self.versions.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.config.algorithm
    }
}

/// Every configured key, by name, and the JWKS they publish.
#[derive(Debug)]
pub struct KeyRing {
    keys: BTreeMap<String, Arc<ManagedKey>>,
    /// The `[log] key`: signs checkpoints only, never published in the JWKS.
    log_key: String,
    published: RwLock<Arc<PublishedJwks>>,
}

/// Which rotations left pending in the store a process takes over when it opens the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupRecovery {
    /// Every one: the daemon starting, before it rotates anything itself.
    Interrupted,
    /// Only those older than any backend deadline: a break-glass command beside a running
    /// daemon, whose rotation in progress must not be taken over.
    LeftOver,
}

impl KeyRing {
    /// Connects each backend once, then loads each key's versions from the store; a key without
    /// versions gets version 1 from the backend (found by `backend_key`, or created there).
    pub async fn open(
        config: &Config,
        store: &Arc<dyn Store>,
        log: &Log,
        clock: &dyn Clock,
        recovery: StartupRecovery,
    ) -> Result<Self, KeyError> {
        let mut backends: HashMap<String, Arc<dyn SigningBackend>> = HashMap::new();
        for (name, backend_config) in &config.backends {
            if config.keys.iter().any(|k| &k.backend == name) {
                backends.insert(
                    name.clone(),
                    crate::backend::build(name, backend_config).await?,
                );
            }
        }
        let mut keys = BTreeMap::new();
        for key_config in &config.keys {
            let backend = backends
                .get(&key_config.backend)
                .cloned()
                .ok_or_else(|| KeyError::UnknownKey(key_config.backend.clone()))?;
            let mut versions = load::load_versions(key_config, &backend, store, clock).await?;
            // A first version recorded before a crash may lack its log entry: write it now.
            // (Later versions are activated in the same commit as their entry.)
            for version in versions
                .iter_mut()
                .filter(|v| v.log_index.is_none() && v.state != KeyState::Pending)
            {
                let index = log
                    .append(&[LogEvent::key_created(version, clock.now_unix())])
                    .await?;
                store
                    .mark_key_version_logged(&version.key, version.version, index)
                    .await?;
                version.log_index = Some(index);
            }
            keys.insert(
                key_config.name.clone(),
                Arc::new(ManagedKey {
                    config: key_config.clone(),
                    backend,
                    versions: RwLock::new(versions),
                    gate: tokio::sync::RwLock::new(()),
                    changing: tokio::sync::Mutex::new(()),
                    rotation_backoff: std::sync::Mutex::new(Backoff::default()),
                    retirement_backoff: std::sync::Mutex::new(Backoff::default()),
                }),
            );
        }
        let ring = KeyRing {
            keys,
            log_key: config.log.key.clone(),
            published: RwLock::new(Arc::new(PublishedJwks::new(Vec::new()))),
        };
        let context = KeyContext { store, log, clock };
        let pending = match recovery {
            StartupRecovery::Interrupted => PendingVersions::All,
            StartupRecovery::LeftOver => PendingVersions::TakenBefore(
                clock
                    .now_unix()
                    .saturating_sub(schedule::STALE_PENDING_SECONDS),
            ),
        };
        for key in ring.keys.values() {
            ring.recover_interrupted_rotation(
                key,
                &context,
                pending,
                &Actor::Scheduler,
                "at start-up",
            )
            .await?;
        }
        ring.check_log_key_apart()?;
        ring.republish()?;
        Ok(ring)
    }

    /// No other key may hold the log key's material: whoever could sign with it could forge
    /// checkpoints. The config refuses a shared backend key name; this catches one backend key
    /// reached under two names (an alias, another label of the same object).
    fn check_log_key_apart(&self) -> Result<(), KeyError> {
        let log_key = self.get(&self.log_key)?;
        let log_spkis: Vec<Vec<u8>> = log_key
            .versions()
            .into_iter()
            .map(|v| v.public_key_spki)
            .collect();
        for key in self.keys.values() {
            if self.is_log_key(&key.config.name) {
                continue;
            }
            for version in key.versions() {
                if log_spkis.contains(&version.public_key_spki) {
                    return Err(KeyError::Inconsistent {
                        key: key.config.name.clone(),
                        reason: format!(
                            "version {} has the same public key as the log key {}: no other key \
                             may share its material",
                            version.version, self.log_key
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reloads every key's versions from the store (changes made by `--config` break-glass
    /// commands or other replicas) and republishes the JWKS when anything changed.
    pub async fn reload(&self, store: &Arc<dyn Store>) -> Result<(), KeyError> {
        let mut changed = false;
        for key in self.keys.values() {
            let fresh = store.key_versions(&key.config.name).await?;
            if key.versions() != fresh {
                let _gate = key.gate.write().await;
                if let Ok(mut versions) = key.versions.write() {
                    *versions = fresh;
                }
                changed = true;
            }
        }
        if changed {
            self.republish()?;
        }
        Ok(())
    }

    async fn reload_key(&self, key: &ManagedKey, store: &Arc<dyn Store>) -> Result<(), KeyError> {
        let fresh = store.key_versions(&key.config.name).await?;
        if let Ok(mut versions) = key.versions.write() {
            *versions = fresh;
        }
        Ok(())
    }

    /// The key named `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<ManagedKey>, KeyError> {
        self.keys
            .get(name)
            .ok_or_else(|| KeyError::UnknownKey(name.to_string()))
    }

    /// The key named `name` unless it is the log key (which signs checkpoints only).
    pub fn signing_key(&self, name: &str) -> Result<&Arc<ManagedKey>, KeyError> {
        if self.is_log_key(name) {
            return Err(KeyError::LogKey(name.to_string()));
        }
        self.get(name)
    }

    /// Whether `name` is the `[log] key`.
    pub fn is_log_key(&self, name: &str) -> bool {
        self.log_key == name
    }

    /// The log key as the log's checkpoint signer, for the log named `origin`.
    pub fn log_signer(&self, origin: &str) -> Result<LogKeySigner, KeyError> {
        let key = self.get(&self.log_key)?;
        let inconsistent = |reason: String| KeyError::Inconsistent {
            key: self.log_key.clone(),
            reason,
        };
        let (active, spki) = key
            .active_with_public_key()
            .ok_or_else(|| inconsistent("it has no active version".into()))?;
        let raw = crate::jwks::ed25519_raw(&spki)
            .ok_or_else(|| inconsistent("its public key is not an Ed25519 key".into()))?;
        let verifier =
            crate::note::VerifierKey::new(origin, &raw).map_err(|e| inconsistent(e.to_string()))?;
        Ok(LogKeySigner {
            backend: Arc::clone(&key.backend),
            reference: active.backend_ref,
            verifier,
        })
    }

    /// Every key, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ManagedKey>> {
        self.keys.values()
    }

    /// The JWKS document currently published.
    pub fn published(&self) -> Arc<PublishedJwks> {
        self.published
            .read()
            .map(|p| Arc::clone(&p))
            .unwrap_or_else(|_| Arc::new(PublishedJwks::new(Vec::new())))
    }

    /// Rebuilds the JWKS from every active and verify-only version.
    fn republish(&self) -> Result<(), KeyError> {
        let mut jwks: Vec<Jwk> = Vec::new();
        for key in self.keys.values() {
            // Verifiers pin the log key itself (`/v1/log/vkey`), never take it from the JWKS.
            if self.is_log_key(&key.config.name) {
                continue;
            }
            for version in key.versions() {
                if matches!(version.state, KeyState::Retired | KeyState::Pending) {
                    continue;
                }
                let jwk = jwks::jwk_from_spki(&version.public_key_spki, version.algorithm)
                    .map_err(|source| KeyError::PublicKey {
                        key: key.config.name.clone(),
                        source,
                    })?;
                if !jwks.iter().any(|j| j.kid == jwk.kid) {
                    jwks.push(jwk);
                }
            }
        }
        if let Ok(mut published) = self.published.write() {
            *published = Arc::new(PublishedJwks::new(jwks));
        }
        Ok(())
    }
}

/// What key changes need: the store, the log and the time.
pub struct KeyContext<'a> {
    /// The store.
    pub store: &'a Arc<dyn Store>,
    /// The log.
    pub log: &'a Log,
    /// The clock.
    pub clock: &'a dyn Clock,
}
