//! The `Store` trait: sessions, quotas and key versions, persisted outside the process so that a
//! restart (and, later, other replicas) see the same state. `store/sqlite.rs` is the default.
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::algorithm::Algorithm;
use crate::config::store::StoreLocation;

/// Why a store call failed. Never contains a token (only hashes reach the store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be understood.
    #[error("store holds malformed data: {0}")]
    Corrupt(String),
    /// A unique constraint refused the write.
    #[error("store conflict: {0}")]
    Conflict(String),
}

/// A signing session as stored. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session token, hex.
    pub token_hash: String,
    /// A random id naming the session in the log (unrelated to the token).
    pub session_id: String,
    /// The config name of the issuer that authenticated the caller.
    pub issuer: String,
    /// The caller's `iss`.
    pub iss: String,
    /// Claims that name the build (repository, ref, workflow, run ids, ...), for the log.
    pub claims: std::collections::BTreeMap<String, serde_json::Value>,
    /// The caller's `sub`.
    pub subject: String,
    /// The policy that granted the session.
    pub policy: String,
    /// Keys the session may use.
    pub keys: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the session is dead from this instant on.
    pub expires_at: i64,
    /// Signature quota.
    pub max_signatures: u64,
    /// Signatures made (charged with their log entries).
    pub used: u64,
    /// Ended early by `DELETE /v1/sessions/current`.
    pub ended: bool,
}

/// The outcome of reserving quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// Reserved.
    Reserved {
        /// Signatures still available after this reservation.
        remaining: u64,
    },
    /// No such session, or it was ended.
    Unknown,
    /// The session has expired.
    Expired,
    /// Not enough quota left; nothing was charged.
    Exhausted {
        /// Signatures still available.
        remaining: u64,
    },
}

/// A charge of `count` signatures against a session, made with its log entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCharge {
    /// The session's token hash.
    pub token_hash: String,
    /// Signatures to charge.
    pub count: u64,
    /// Unix seconds; the session must not have expired by then.
    pub now: i64,
}

/// A key lifecycle change, committed in the same transaction as the log entry that records it:
/// both happen or neither, so a crash never leaves a change unlogged or a log entry unapplied,
/// and of two replicas attempting the same change only one succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// The pending `version` (its backend key recorded) becomes active; the active one becomes
    /// verify-only until `retire_at`. The new version's `log_index` is its entry's.
    Activate {
        /// The logical key.
        key: String,
        /// The pending version.
        version: u32,
        /// When the previous version retires.
        retire_at: i64,
        /// Unix seconds: the new version's activation time.
        now: i64,
    },
    /// A verify-only `version` is retired: unpublished, kept for audit.
    Retire {
        /// The logical key.
        key: String,
        /// The version.
        version: u32,
    },
    /// A pending `version` whose backend key was never recorded is dropped.
    Abandon {
        /// The logical key.
        key: String,
        /// The version.
        version: u32,
    },
    /// A verify-only or retired `version` is revoked: compromised from `compromised_since`.
    Revoke {
        /// The logical key.
        key: String,
        /// The version.
        version: u32,
        /// Unix seconds.
        compromised_since: i64,
    },
}

/// Which live sessions an administrator ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionScope {
    /// Every session of this subject (`sub`).
    Subject(String),
    /// Every session granted by this policy.
    Policy(String),
    /// Every session.
    All,
}

/// One request's part of a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppend {
    /// The quota to charge first, if any.
    pub charge: Option<QuotaCharge>,
    /// The key change to apply first, if any.
    pub key_change: Option<KeyChange>,
    /// Signatures' key and version, which must still be active when they are appended.
    pub signing_version: Option<(String, u32)>,
    /// Leaves to append if the charge and change succeed.
    pub leaves: Vec<Vec<u8>>,
}

/// What became of one `LogAppend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Charged (if charged) and appended.
    Appended {
        /// Index of the first leaf.
        first_index: u64,
        /// Quota left after the charge, if there was one.
        remaining: Option<u64>,
    },
    /// The charge was refused (never `Reserved`); nothing was appended.
    Refused(QuotaOutcome),
    /// The key change no longer applies (another replica or task made it); nothing was appended.
    Stale(String),
}

/// The lifecycle state of a key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Being created by a rotation: not published, never signs.
    Pending,
    /// Signs.
    Active,
    /// Published for verification only.
    VerifyOnly,
    /// Neither signs nor is published; kept for audit.
    Retired,
}

impl KeyState {
    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::VerifyOnly => "verify-only",
            KeyState::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<KeyState> {
        match text {
            "pending" => Some(KeyState::Pending),
            "active" => Some(KeyState::Active),
            "verify-only" => Some(KeyState::VerifyOnly),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// One version of a logical key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionRecord {
    /// The logical key's name.
    pub key: String,
    /// 1, 2, ...
    pub version: u32,
    /// RFC 7638 thumbprint of the public key.
    pub key_id: String,
    /// The backend's config name.
    pub backend: String,
    /// The backend's opaque reference.
    pub backend_ref: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// SPKI DER.
    pub public_key_spki: Vec<u8>,
    /// Lifecycle state.
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds at which a verify-only version becomes retired.
    pub retire_at: Option<i64>,
    /// Index of its `key_created` log entry, once written.
    pub log_index: Option<u64>,
    /// Set once the version is revoked: its `key_revoked` entry and the compromise time.
    pub revocation: Option<Revocation>,
}

/// A revoked version's record: signatures logged from `compromised_since` on are invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// The `key_revoked` entry's index.
    pub log_index: u64,
    /// Unix seconds from which the key is taken to be compromised.
    pub compromised_since: i64,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: [u8; 32],
    /// The signed note (C2SP tlog-checkpoint).
    pub note: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// One stored log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Position in the log.
    pub index: u64,
    /// The leaf bytes (canonical JSON of the event).
    pub leaf: Vec<u8>,
    /// The leaf hash recorded at append time.
    pub leaf_hash: [u8; 32],
}

/// Persistence for everything that must be exact across restarts and replicas.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records a new session.
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// The session whose token hashes to `token_hash`, if any (ended or expired ones too).
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Ends a session; false if there was no live session.
    async fn end_session(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// The live (not ended, not expired) sessions in `scope`.
    async fn live_sessions(
        &self,
        scope: &SessionScope,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Ends the live sessions among `token_hashes`; how many it ended.
    async fn end_sessions(&self, token_hashes: Vec<String>) -> Result<u64, StoreError>;

    /// Deletes sessions that expired before `before`; returns how many.
    async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError>;

    /// Every version of `key`, oldest first.
    async fn key_versions(&self, key: &str) -> Result<Vec<KeyVersionRecord>, StoreError>;

    /// Records a new key version; a second version with the same number is a conflict.
    async fn insert_key_version(&self, version: &KeyVersionRecord) -> Result<(), StoreError>;

    /// Records the backend key of a pending version (state stays pending).
    async fn record_pending_key(
        &self,
        key: &str,
        version: u32,
        backend_ref: &str,
        public_key_spki: &[u8],
        key_id: &str,
    ) -> Result<(), StoreError>;

    /// Records that version `version` of `key` has its `key_created` entry at `log_index`.
    async fn mark_key_version_logged(
        &self,
        key: &str,
        version: u32,
        log_index: u64,
    ) -> Result<(), StoreError>;

    /// Commits a batch of appends in one durable transaction (synced to disk before it returns).
    /// Each append first charges its quota, if it has a charge: atomically, so concurrent
    /// requests can never together exceed a session's quota; a refused charge appends nothing.
    /// Leaves are stored with their hashes and every Merkle node they complete.
    ///
    /// Called on the log's own writer thread, which may block: the commit waits for the disk,
    /// and a thread of its own spares the async workers and the hand-offs between them.
    fn append_log_blocking(&self, batch: Vec<LogAppend>) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Housekeeping the log writer runs after answering a commit's callers, so that none of
    /// them waits for it (SQLite: bounding the WAL).
    fn after_append_blocking(&self) {}

    /// The number of leaves in the log.
    async fn log_size(&self) -> Result<u64, StoreError>;

    /// Entries `start..end` (those present; a gap means an entry is missing).
    async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, StoreError>;

    /// Stored perfect-subtree hashes at `(level, index)` positions; `None` where missing.
    async fn log_nodes(
        &self,
        positions: Vec<(u32, u64)>,
    ) -> Result<Vec<Option<[u8; 32]>>, StoreError>;

    /// The checkpoint of the largest size.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Stores a checkpoint (replacing the note of one with the same size and root); a conflict
    /// if one of the same size with another root exists.
    async fn insert_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;

    /// Checks that the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the configured store.
pub async fn open(location: &StoreLocation) -> Result<Arc<dyn Store>, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
    }
}
