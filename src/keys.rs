//! Logical keys: each has versions (one `active`, older ones `verify-only`, then `retired`) kept
//! in the store, each version a key inside a backend. Builds the published JWKS.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::algorithm::Algorithm;
use crate::backend::{BackendError, KeySpec, SigningBackend};
use crate::clock::Clock;
use crate::config::{Config, KeyConfig};
use crate::jwks::{self, Jwk, JwkError, PublishedJwks};
use crate::log::event::LogEvent;
use crate::log::{Log, LogError};
use crate::store::{KeyState, KeyVersionRecord, Store, StoreError};

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

/// One logical key and its backend.
#[derive(Debug)]
pub struct ManagedKey {
    /// Its configuration.
    pub config: KeyConfig,
    /// The backend holding its versions.
    pub backend: Arc<dyn SigningBackend>,
    versions: RwLock<Vec<KeyVersionRecord>>,
}

impl ManagedKey {
    /// The active version.
    pub fn active(&self) -> Option<ActiveVersion> {
        let versions = self.versions.read().ok()?;
        versions
            .iter()
            .rev()
            .find(|v| v.state == KeyState::Active)
            .map(|v| ActiveVersion {
                version: v.version,
                key_id: v.key_id.clone(),
                backend_ref: v.backend_ref.clone(),
            })
    }

    /// The active version and its SPKI public key.
    pub fn active_with_public_key(&self) -> Option<(ActiveVersion, Vec<u8>)> {
        let versions = self.versions.read().ok()?;
        versions
            .iter()
            .rev()
            .find(|v| v.state == KeyState::Active)
            .map(|v| {
                (
                    ActiveVersion {
                        version: v.version,
                        key_id: v.key_id.clone(),
                        backend_ref: v.backend_ref.clone(),
                    },
                    v.public_key_spki.clone(),
                )
            })
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
    published: RwLock<Arc<PublishedJwks>>,
}

impl KeyRing {
    /// Connects each backend once, then loads each key's versions from the store; a key without
    /// versions gets version 1 from the backend (found by `backend_key`, or created there).
    pub async fn open(
        config: &Config,
        store: &Arc<dyn Store>,
        log: &Log,
        clock: &dyn Clock,
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
            let mut versions = load_versions(key_config, &backend, store, clock).await?;
            // A version recorded before a crash may lack its log entry: write it now.
            for version in versions.iter_mut().filter(|v| v.log_index.is_none()) {
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
                }),
            );
        }
        let ring = KeyRing {
            keys,
            published: RwLock::new(Arc::new(PublishedJwks::new(Vec::new()))),
        };
        ring.republish()?;
        Ok(ring)
    }

    /// The key named `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<ManagedKey>, KeyError> {
        self.keys
            .get(name)
            .ok_or_else(|| KeyError::UnknownKey(name.to_string()))
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
            for version in key.versions() {
                if version.state == KeyState::Retired {
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

async fn load_versions(
    config: &KeyConfig,
    backend: &Arc<dyn SigningBackend>,
    store: &Arc<dyn Store>,
    clock: &dyn Clock,
) -> Result<Vec<KeyVersionRecord>, KeyError> {
    let inconsistent = |reason: String| KeyError::Inconsistent {
        key: config.name.clone(),
        reason,
    };
    let versions = store.key_versions(&config.name).await?;
    if versions.is_empty() {
        let spec = KeySpec {
            key_name: config.name.clone(),
            backend_key: config.backend_key().to_string(),
            algorithm: config.algorithm,
            rsa_bits: config.rsa_bits,
        };
        let found = backend.find_or_create(&spec).await?;
        let jwk =
            jwks::jwk_from_spki(&found.public_key_spki, config.algorithm).map_err(|source| {
                KeyError::PublicKey {
                    key: config.name.clone(),
                    source,
                }
            })?;
        if found.created {
            tracing::info!(key = %config.name, backend = %backend.name(), kid = %jwk.kid, "created version 1 inside the backend");
        }
        let record = KeyVersionRecord {
            key: config.name.clone(),
            version: 1,
            key_id: jwk.kid,
            backend: backend.name().to_string(),
            backend_ref: found.reference,
            algorithm: config.algorithm,
            public_key_spki: found.public_key_spki,
            state: KeyState::Active,
            created_at: clock.now_unix(),
            retire_at: None,
            log_index: None,
        };
        match store.insert_key_version(&record).await {
            Ok(()) => return Ok(vec![record]),
            // Another replica recorded version 1 first: use what it recorded.
            Err(StoreError::Conflict(_)) => {
                return Box::pin(load_versions(config, backend, store, clock)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for version in &versions {
        if version.state == KeyState::Retired {
            continue;
        }
        if version.algorithm != config.algorithm {
            return Err(inconsistent(format!(
                "version {} is {} but the config says {}; add a new key instead of changing the algorithm",
                version.version, version.algorithm, config.algorithm
            )));
        }
        if version.backend != backend.name() {
            return Err(inconsistent(format!(
                "version {} lives in backend {} but the config says {}",
                version.version,
                version.backend,
                backend.name()
            )));
        }
        // A key swapped inside the HSM behind our back must not be published under the old kid.
        let spki = backend
            .public_key(&version.backend_ref, version.algorithm)
            .await?;
        if spki != version.public_key_spki {
            return Err(inconsistent(format!(
                "the backend's public key for version {} differs from the one recorded (kid {})",
                version.version, version.key_id
            )));
        }
    }
    Ok(versions)
}
