//! Logical keys: each has versions (one `active`, older ones `verify-only`, then `retired`) kept
//! in the store, each version a key inside a backend. Builds the published JWKS.
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

/// Back-off for scheduled work that keeps failing: each failure may leave a log entry (a
/// rolled-back rotation) and a key in the backend, so it is not retried every second.
#[derive(Debug, Default)]
struct Backoff {
    next_attempt: i64,
    failures: u32,
}

/// Which pending versions a recovery settles.
#[derive(Debug, Clone, Copy)]
enum PendingVersions {
    /// Every one (at start-up, before this process rotates anything).
    All,
    /// The one a failed rotation of this process left.
    Only(u32),
    /// Those taken before this Unix time: left over, not in progress anywhere.
    TakenBefore(i64),
}

impl PendingVersions {
    fn includes(self, version: &KeyVersionRecord) -> bool {
        match self {
            PendingVersions::All => true,
            PendingVersions::Only(number) => version.version == number,
            PendingVersions::TakenBefore(time) => version.created_at < time,
        }
    }
}

/// First pause after a failed scheduled rotation or retirement; it doubles up to the maximum.
const SCHEDULED_RETRY_FIRST_SECONDS: i64 = 60;
const SCHEDULED_RETRY_MAX_SECONDS: i64 = 3600;
/// A pending version older than this is left over (its request cut off, or the store down
/// while cleaning up), not a rotation in progress: longer than any backend deadline.
const STALE_PENDING_SECONDS: i64 = 600;

impl Backoff {
    fn due(&self, now: i64) -> bool {
        now >= self.next_attempt
    }

    fn record(&mut self, succeeded: bool, now: i64) {
        if succeeded {
            *self = Backoff::default();
            return;
        }
        let pause = SCHEDULED_RETRY_FIRST_SECONDS
            .saturating_mul(1 << self.failures.min(6))
            .min(SCHEDULED_RETRY_MAX_SECONDS);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = now.saturating_add(pause);
    }
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
        for key in ring.keys.values() {
            ring.recover_interrupted_rotation(
                key,
                &context,
                PendingVersions::All,
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

    /// A rotation a crash (or a failure) interrupted is finished when its backend key was
    /// recorded, and undone otherwise; the log says which, by whom, and `when`.
    async fn recover_interrupted_rotation(
        &self,
        key: &ManagedKey,
        context: &KeyContext<'_>,
        which: PendingVersions,
        actor: &Actor,
        when: &str,
    ) -> Result<(), KeyError> {
        let versions = context.store.key_versions(&key.config.name).await?;
        for pending in versions
            .iter()
            .filter(|v| v.state == KeyState::Pending && which.includes(v))
        {
            if pending.backend_ref.is_empty() {
                tracing::warn!(key = %key.config.name, version = pending.version, "rolling back a rotation interrupted before its backend key was recorded");
                self.abandon(
                    key,
                    pending.version,
                    &format!("interrupted before its backend key was recorded; rolled back {when}"),
                    context,
                )
                .await?;
            } else {
                tracing::warn!(key = %key.config.name, version = pending.version, "completing a rotation interrupted after its backend key was made");
                let previous = versions
                    .iter()
                    .rev()
                    .find(|v| v.state == KeyState::Active)
                    .cloned();
                let mut record = pending.clone();
                record.state = KeyState::Active;
                self.activate(
                    key,
                    &record,
                    previous.as_ref(),
                    actor,
                    &format!("interrupted after its backend key was made; completed {when}"),
                    context,
                )
                .await?;
            }
        }
        self.reload_key(key, context.store).await?;
        Ok(())
    }

    /// Rotates `name`: a new version is created inside the backend, then becomes active in the
    /// same commit as its `key_rotated` log entry; the active one turns verify-only for the
    /// key's grace period.
    pub async fn rotate(
        &self,
        name: &str,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let key = self.signing_key(name)?;
        let _one_at_a_time = key.changing.lock().await;
        self.rotate_locked(key, actor, reason, context).await
    }

    async fn rotate_locked(
        &self,
        key: &ManagedKey,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let name = &key.config.name;
        let conflict = |reason: String| KeyError::Conflict {
            key: name.clone(),
            reason,
        };
        let versions = context.store.key_versions(name).await?;
        if versions.iter().any(|v| v.state == KeyState::Pending) {
            return Err(conflict("a rotation is already under way".into()));
        }
        let current = versions
            .iter()
            .rev()
            .find(|v| v.state == KeyState::Active)
            .cloned()
            .ok_or_else(|| conflict("it has no active version".into()))?;
        let number = versions.last().map_or(1, |v| v.version + 1);
        let pending = KeyVersionRecord {
            key: name.clone(),
            version: number,
            key_id: String::new(),
            backend: key.backend.name().to_string(),
            backend_ref: String::new(),
            algorithm: key.config.algorithm,
            public_key_spki: Vec::new(),
            state: KeyState::Pending,
            created_at: context.clock.now_unix(),
            retire_at: None,
            log_index: None,
            revocation: None,
        };
        // The version number is taken in the store first: of two replicas rotating at once,
        // one gets a conflict here.
        context
            .store
            .insert_key_version(&pending)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(reason) => conflict(reason),
                other => other.into(),
            })?;
        let number = pending.version;
        let error = match self
            .make_and_activate(key, pending, &current, actor, reason, context)
            .await
        {
            Ok(record) => return Ok(record),
            Err(error) => error,
        };
        // Leave this pending version behind in no case (it would block every later rotation):
        // finish or undo it now, as a restart would. If that fails too, the scheduler retries.
        let recovered = self
            .recover_interrupted_rotation(
                key,
                context,
                PendingVersions::Only(number),
                actor,
                "after the rotation failed",
            )
            .await;
        match recovered {
            // Finished after all (its backend key was made): the rotation happened.
            Ok(()) => {
                if let Some(done) = key
                    .versions()
                    .into_iter()
                    .find(|v| v.version == number && v.state == KeyState::Active)
                {
                    return Ok(done);
                }
            }
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "could not settle a failed rotation; will retry")
            }
        }
        Err(error)
    }

    /// The rest of a rotation once its version number is taken: the backend key, then the
    /// activation with its log entry.
    async fn make_and_activate(
        &self,
        key: &ManagedKey,
        pending: KeyVersionRecord,
        current: &KeyVersionRecord,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let name = &key.config.name;
        let number = pending.version;
        let made = match key
            .backend
            .create_version(&key.spec(), &current.backend_ref, number)
            .await
        {
            Ok(made) => made,
            Err(e) => {
                let reason = format!("the backend could not create it: {e}");
                self.abandon(key, number, &reason, context).await?;
                return Err(e.into());
            }
        };
        let jwk =
            jwks::jwk_from_spki(&made.public_key_spki, key.config.algorithm).map_err(|source| {
                KeyError::PublicKey {
                    key: name.clone(),
                    source,
                }
            })?;
        context
            .store
            .record_pending_key(
                name,
                number,
                &made.reference,
                &made.public_key_spki,
                &jwk.kid,
            )
            .await?;
        failpoint("rotation.after_backend_key");
        let record = KeyVersionRecord {
            key_id: jwk.kid,
            backend_ref: made.reference,
            public_key_spki: made.public_key_spki,
            state: KeyState::Active,
            ..pending
        };
        self.activate(key, &record, Some(current), actor, reason, context)
            .await?;
        tracing::info!(key = %name, version = number, kid = %record.key_id, "rotated");
        Ok(self
            .get(name)?
            .versions()
            .into_iter()
            .find(|v| v.version == number)
            .unwrap_or(record))
    }

    /// Makes a pending version active, committed with its log entry, under the key's gate.
    async fn activate(
        &self,
        key: &ManagedKey,
        record: &KeyVersionRecord,
        previous: Option<&KeyVersionRecord>,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<(), KeyError> {
        let now = context.clock.now_unix();
        let grace = i64::try_from(key.config.grace_period.get().as_secs()).unwrap_or(i64::MAX);
        let retire_at = now.saturating_add(grace);
        let event = LogEvent::key_rotated(record, previous, retire_at, actor, reason, now);
        let change = KeyChange::Activate {
            key: key.config.name.clone(),
            version: record.version,
            retire_at,
            now,
        };
        // Signatures in flight finish and are logged first; new ones wait for the new version.
        let _gate = key.gate.write().await;
        let outcome = context.log.append_key_change(change, &[event]).await?;
        self.reload_key(key, context.store).await?;
        self.republish()?;
        match outcome {
            AppendOutcome::Appended { .. } => Ok(()),
            AppendOutcome::Stale(reason) => Err(KeyError::Conflict {
                key: key.config.name.clone(),
                reason,
            }),
            AppendOutcome::Refused(_) => Err(KeyError::Inconsistent {
                key: key.config.name.clone(),
                reason: "an uncharged append was refused".into(),
            }),
        }
    }

    /// Drops a pending version, committed with a `key_rotation_rolled_back` entry.
    async fn abandon(
        &self,
        key: &ManagedKey,
        version: u32,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<(), KeyError> {
        let now = context.clock.now_unix();
        let event = LogEvent::key_rotation_rolled_back(&key.config.name, version, reason, now);
        let change = KeyChange::Abandon {
            key: key.config.name.clone(),
            version,
        };
        context.log.append_key_change(change, &[event]).await?;
        self.reload_key(key, context.store).await
    }

    /// Retires `version` of `name` at once: gone from the JWKS, kept for audit; what it signed
    /// stays valid (a compromise is `revoke`). An active version is first replaced.
    pub async fn retire(
        &self,
        name: &str,
        version: u32,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let key = self.signing_key(name)?;
        let _one_at_a_time = key.changing.lock().await;
        let target = self
            .take_out_of_service(key, version, "retired", actor, reason, context)
            .await?;
        if target.state == KeyState::Retired {
            return Err(KeyError::BadVersion {
                key: name.to_string(),
                reason: format!("version {version} is already retired"),
            });
        }
        let event = LogEvent::key_retired(&target, actor, reason, context.clock.now_unix());
        let change = KeyChange::Retire {
            key: name.to_string(),
            version,
        };
        let retired = self.commit_change(key, change, event, context).await?;
        tracing::info!(key = %name, version, "retired");
        Ok(retired.unwrap_or(target))
    }

    /// Revokes `version` of `name` as compromised from `compromised_since` (Unix seconds, not in
    /// the future): irreversible. Signatures it made that were logged from then on stop
    /// verifying; earlier ones still do. An active version is first replaced by a new one.
    pub async fn revoke(
        &self,
        name: &str,
        version: u32,
        compromised_since: i64,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let key = self.signing_key(name)?;
        let _one_at_a_time = key.changing.lock().await;
        let bad = |reason: String| KeyError::BadVersion {
            key: name.to_string(),
            reason,
        };
        if compromised_since > context.clock.now_unix() {
            return Err(bad("compromised_since is in the future".into()));
        }
        let revoked = context
            .store
            .key_versions(name)
            .await?
            .iter()
            .any(|v| v.version == version && v.revocation.is_some());
        if revoked {
            return Err(bad(format!("version {version} is already revoked")));
        }
        let target = self
            .take_out_of_service(key, version, "revoked", actor, reason, context)
            .await?;
        let event = LogEvent::key_revoked(
            &target,
            compromised_since,
            actor,
            reason,
            context.clock.now_unix(),
        );
        let change = KeyChange::Revoke {
            key: name.to_string(),
            version,
            compromised_since,
        };
        let revoked = self.commit_change(key, change, event, context).await?;
        tracing::warn!(key = %name, version, compromised_since, "revoked");
        Ok(revoked.unwrap_or(target))
    }

    /// The recorded `version` of `key`, which is about to be `doing` (retired, revoked): an
    /// active one is first replaced by a new version, so signing goes on.
    async fn take_out_of_service(
        &self,
        key: &ManagedKey,
        version: u32,
        doing: &str,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let name = &key.config.name;
        let bad = |reason: String| KeyError::BadVersion {
            key: name.clone(),
            reason,
        };
        let target = context
            .store
            .key_versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| bad(format!("it has no version {version}")))?;
        match target.state {
            KeyState::Pending => Err(bad(format!("version {version} is being created"))),
            KeyState::Active => {
                self.rotate_locked(
                    key,
                    actor,
                    &format!("replacing version {version}, which is being {doing}: {reason}"),
                    context,
                )
                .await?;
                Ok(target)
            }
            KeyState::VerifyOnly | KeyState::Retired => Ok(target),
        }
    }

    /// Commits `change` with its log `event`, then republishes; the version as it now stands.
    async fn commit_change(
        &self,
        key: &ManagedKey,
        change: KeyChange,
        event: LogEvent,
        context: &KeyContext<'_>,
    ) -> Result<Option<KeyVersionRecord>, KeyError> {
        let version = match &change {
            KeyChange::Activate { version, .. }
            | KeyChange::Retire { version, .. }
            | KeyChange::Abandon { version, .. }
            | KeyChange::Revoke { version, .. } => *version,
        };
        let outcome = context.log.append_key_change(change, &[event]).await?;
        self.reload_key(key, context.store).await?;
        self.republish()?;
        if let AppendOutcome::Stale(reason) = outcome {
            return Err(KeyError::Conflict {
                key: key.config.name.clone(),
                reason,
            });
        }
        Ok(key.versions().into_iter().find(|v| v.version == version))
    }

    /// Scheduled work that is due: rotations by `rotation_period` (from the active version's
    /// activation time, in the store) and retirements at `retire_at`. The store's commits make
    /// each happen once, whichever task or replica gets there first.
    pub async fn run_due(&self, context: &KeyContext<'_>) {
        let now = context.clock.now_unix();
        for key in self.keys.values() {
            if self.is_log_key(&key.config.name) {
                continue;
            }
            if key.rotation_backoff.lock().is_ok_and(|b| b.due(now)) {
                let succeeded = self.rotate_if_due(key, now, context).await;
                if let Ok(mut backoff) = key.rotation_backoff.lock() {
                    backoff.record(succeeded, now);
                }
            }
            if key.retirement_backoff.lock().is_ok_and(|b| b.due(now)) {
                let succeeded = self.retire_due(key, now, context).await;
                if let Ok(mut backoff) = key.retirement_backoff.lock() {
                    backoff.record(succeeded, now);
                }
            }
        }
    }

    /// Settles rotations left pending, and rotates when `rotation_period` has elapsed; false
    /// when something failed (it is retried after a pause).
    async fn rotate_if_due(&self, key: &ManagedKey, now: i64, context: &KeyContext<'_>) -> bool {
        let name = &key.config.name;
        let left_over = PendingVersions::TakenBefore(now.saturating_sub(STALE_PENDING_SECONDS));
        let has_left_over = key
            .versions()
            .iter()
            .any(|v| v.state == KeyState::Pending && left_over.includes(v));
        let due = |key: &ManagedKey| {
            let period = key.config.rotation_period.as_ref()?;
            let period = i64::try_from(period.get().as_secs()).unwrap_or(i64::MAX);
            key.active_record()
                .map(|active| active.created_at.saturating_add(period) <= now)
        };
        if !has_left_over && due(key) != Some(true) {
            return true;
        }
        let _one_at_a_time = key.changing.lock().await;
        let mut succeeded = true;
        if has_left_over {
            let when = "by the scheduler, after it was left pending";
            if let Err(e) = self
                .recover_interrupted_rotation(key, context, left_over, &Actor::Scheduler, when)
                .await
            {
                tracing::warn!(key = %name, error = %e, "could not settle a rotation left pending; will retry after a pause");
                succeeded = false;
            }
        }
        // Checked again under the lock: a rotation that just finished here (an admin's, say)
        // moved the due date.
        if let Err(e) = self.reload_key(key, context.store).await {
            tracing::warn!(key = %name, error = %e, "could not reread the key's versions");
            return false;
        }
        if due(key) == Some(true)
            && let Err(e) = self
                .rotate_locked(
                    key,
                    &Actor::Scheduler,
                    "scheduled: rotation_period elapsed",
                    context,
                )
                .await
        {
            tracing::warn!(key = %name, error = %e, "scheduled rotation failed; will retry after a pause");
            succeeded = false;
        }
        succeeded
    }

    /// Retires verify-only versions whose grace period is over; false when one failed.
    async fn retire_due(&self, key: &ManagedKey, now: i64, context: &KeyContext<'_>) -> bool {
        let name = &key.config.name;
        let mut succeeded = true;
        for version in key.versions() {
            if version.state == KeyState::VerifyOnly
                && version.retire_at.is_some_and(|at| at <= now)
                && let Err(e) = self
                    .retire(
                        name,
                        version.version,
                        &Actor::Scheduler,
                        "grace period over",
                        context,
                    )
                    .await
            {
                tracing::warn!(key = %name, version = version.version, error = %e, "scheduled retirement failed; will retry after a pause");
                succeeded = false;
            }
        }
        succeeded
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

/// The log key signing checkpoints through its backend (Ed25519 over the note text).
#[derive(Debug)]
pub struct LogKeySigner {
    backend: Arc<dyn SigningBackend>,
    reference: String,
    verifier: crate::note::VerifierKey,
}

#[async_trait::async_trait]
impl crate::log::CheckpointSigner for LogKeySigner {
    fn verifier(&self) -> &crate::note::VerifierKey {
        &self.verifier
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut signatures = self
            .backend
            .sign(&self.reference, Algorithm::EdDSA, vec![message.to_vec()])
            .await?;
        signatures.pop().ok_or_else(|| BackendError::Malformed {
            backend: self.backend.name().to_string(),
            reason: "no signature in the answer".into(),
        })
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

/// Test hook for crash tests: `SIGNET_FAILPOINT=NAME` aborts the process at the point `NAME`.
/// Debug builds only (the tests'): a release binary has no such hook.
#[cfg(debug_assertions)]
fn failpoint(name: &str) {
    if std::env::var("SIGNET_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
fn failpoint(_name: &str) {}

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
            revocation: None,
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
        if matches!(version.state, KeyState::Retired | KeyState::Pending) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_work_backs_off_after_failures_and_resets_on_success() {
        let mut backoff = Backoff::default();
        assert!(backoff.due(0));
        backoff.record(false, 1_000);
        assert!(!backoff.due(1_059));
        assert!(backoff.due(1_060));
        backoff.record(false, 1_060);
        assert_eq!(backoff.next_attempt, 1_060 + 120);
        for _ in 0..20 {
            backoff.record(false, 5_000);
        }
        assert_eq!(backoff.next_attempt, 5_000 + SCHEDULED_RETRY_MAX_SECONDS);
        backoff.record(true, 6_000);
        assert!(backoff.due(6_000));
        assert_eq!(backoff.failures, 0);
    }
}
