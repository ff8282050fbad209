//! The tamper-evident log: an append-only RFC 9162 Merkle tree of events in the store, durable
//! before anything is acknowledged, with signed checkpoints anyone can check from outside.
//!
//! Appends are group-committed: callers hand their leaves to one writer task, which takes every
//! request waiting at that moment and commits them in one transaction (one fsync). While a
//! commit runs, new requests queue for the next one, so the log keeps pace with signing.
pub mod checkpoint;
pub mod event;
pub mod merkle;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::algorithm::Algorithm;
use crate::backend::BackendError;
use crate::canonical::CanonicalError;
use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::store::{
    AppendOutcome, KeyChange, LogAppend, QuotaCharge, Store, StoreError, StoredCheckpoint,
    StoredEntry,
};
use checkpoint::{Checkpoint, ecdsa_key_id, sign_note};
use event::LogEvent;
use merkle::{Hash, MerkleError, Tree};

/// Most leaves committed in one transaction.
const MAX_LEAVES_PER_COMMIT: usize = 10_000;
/// A commit at least this slow is logged as a warning (the disk or the host stalled).
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// Requests waiting for the writer before callers are made to wait for room.
const QUEUE_DEPTH: usize = 4096;

/// Why a log operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer task has stopped (shutting down).
    #[error("the log writer has stopped")]
    Closed,
    /// An event could not be serialized canonically.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// Signing a checkpoint failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Arguments outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The requested tree or entry does not exist (yet).
    #[error("{0}")]
    NotFound(String),
    /// The stored tree disagrees with itself or with an earlier checkpoint: tampering.
    #[error("log inconsistent: {0}")]
    Inconsistent(String),
}

struct AppendRequest {
    item: LogAppend,
    reply: oneshot::Sender<Result<AppendOutcome, LogError>>,
}

/// The log: append, read, prove, checkpoint.
#[derive(Debug, Clone)]
pub struct Log {
    store: Arc<dyn Store>,
    sender: mpsc::Sender<AppendRequestHandle>,
    origin: String,
}

/// Wrapper so `Log` can derive `Debug`.
struct AppendRequestHandle(AppendRequest);

impl std::fmt::Debug for AppendRequestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest")
            .field("leaves", &self.0.item.leaves.len())
            .finish()
    }
}

impl Log {
    /// Starts the writer task over `store`.
    pub fn start(store: Arc<dyn Store>, origin: &str) -> Log {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let writer_store = Arc::clone(&store);
        // The thread ends when every `Log` (and so every sender) is dropped.
        let spawned = std::thread::Builder::new()
            .name("signet-log-writer".into())
            .spawn(move || write_loop(writer_store, receiver));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the log writer thread; appends will fail");
        }
        Log {
            store,
            sender,
            origin: origin.to_string(),
        }
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends events; returns the index of the first once the commit is durable.
    pub async fn append(&self, events: &[LogEvent]) -> Result<u64, LogError> {
        match self.submit(None, None, events).await? {
            AppendOutcome::Appended { first_index, .. } => Ok(first_index),
            AppendOutcome::Refused(_) | AppendOutcome::Stale(_) => Err(LogError::Inconsistent(
                "an uncharged append was refused".into(),
            )),
        }
    }

    /// Charges a session's quota and appends events in the same durable commit: either both
    /// happen or neither does.
    pub async fn append_charged(
        &self,
        charge: QuotaCharge,
        events: &[LogEvent],
    ) -> Result<AppendOutcome, LogError> {
        self.submit(Some(charge), None, events).await
    }

    /// Applies a key change and appends the events recording it in the same durable commit;
    /// `Stale` if the change no longer applies.
    pub async fn append_key_change(
        &self,
        change: KeyChange,
        events: &[LogEvent],
    ) -> Result<AppendOutcome, LogError> {
        self.submit(None, Some(change), events).await
    }

    async fn submit(
        &self,
        charge: Option<QuotaCharge>,
        key_change: Option<KeyChange>,
        events: &[LogEvent],
    ) -> Result<AppendOutcome, LogError> {
        let leaves = events
            .iter()
            .map(LogEvent::to_leaf)
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        let item = LogAppend {
            charge,
            key_change,
            leaves,
        };
        self.sender
            .send(AppendRequestHandle(AppendRequest { item, reply }))
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// The number of leaves.
    pub async fn size(&self) -> Result<u64, LogError> {
        Ok(self.store.log_size().await?)
    }

    /// Entries `start..end`; an error names the first missing index.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, LogError> {
        let entries = self.store.log_entries(start, end).await?;
        for (expected, entry) in (start..end).zip(&entries) {
            if entry.index != expected {
                return Err(LogError::Inconsistent(format!(
                    "entry {expected} is missing"
                )));
            }
        }
        if entries.len() as u64 != end.saturating_sub(start) {
            return Err(LogError::Inconsistent(format!(
                "entry {} is missing",
                start + entries.len() as u64
            )));
        }
        Ok(entries)
    }

    /// Runs a Merkle computation over the stored nodes with one batched read: a first pass
    /// records which nodes it touches (positions do not depend on hash values), then they are
    /// read at once, then the real pass runs.
    async fn with_tree<T>(
        &self,
        compute: impl Fn(
            &mut Tree<&mut dyn FnMut(u32, u64) -> Result<Hash, ()>>,
        ) -> Result<T, MerkleError<()>>,
    ) -> Result<T, LogError> {
        let mut positions = Vec::new();
        {
            let mut record = |level: u32, index: u64| -> Result<Hash, ()> {
                positions.push((level, index));
                Ok([0; 32])
            };
            let mut tree = Tree::new(&mut record as &mut dyn FnMut(u32, u64) -> Result<Hash, ()>);
            compute(&mut tree).map_err(merkle_error)?;
        }
        positions.sort_unstable();
        positions.dedup();
        let hashes = self.store.log_nodes(positions.clone()).await?;
        let mut nodes = HashMap::with_capacity(positions.len());
        for (position, hash) in positions.into_iter().zip(hashes) {
            let hash = hash.ok_or_else(|| {
                LogError::Inconsistent(format!(
                    "Merkle node {position:?} is missing from the store"
                ))
            })?;
            nodes.insert(position, hash);
        }
        let mut read = |level: u32, index: u64| nodes.get(&(level, index)).copied().ok_or(());
        let mut tree = Tree::new(&mut read as &mut dyn FnMut(u32, u64) -> Result<Hash, ()>);
        compute(&mut tree).map_err(merkle_error)
    }

    /// The root hash of the tree of `size` leaves.
    pub async fn root(&self, size: u64) -> Result<Hash, LogError> {
        self.with_tree(|tree| tree.root(size).map_err(MerkleError::Node))
            .await
    }

    /// RFC 9162 inclusion proof of `index` in the tree of `size` (≤ the log's size).
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        if index >= size {
            return Err(LogError::OutOfRange("index must be below tree_size".into()));
        }
        self.check_size(size).await?;
        self.with_tree(|tree| tree.inclusion_proof(index, size))
            .await
    }

    /// RFC 9162 consistency proof between the trees of `from` and `to` leaves.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
        if from == 0 || from > to {
            return Err(LogError::OutOfRange("need 0 < from <= to".into()));
        }
        self.check_size(to).await?;
        self.with_tree(|tree| tree.consistency_proof(from, to))
            .await
    }

    async fn check_size(&self, size: u64) -> Result<(), LogError> {
        let current = self.size().await?;
        if size > current {
            return Err(LogError::NotFound(format!(
                "the log has {current} entries, fewer than {size}"
            )));
        }
        Ok(())
    }

    /// The latest signed checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LogError> {
        Ok(self.store.latest_checkpoint().await?)
    }

    /// Signs and stores a checkpoint of the current tree if it grew since the last one. Before
    /// signing, proves the new tree consistent with the last checkpoint, so a tampered store
    /// stops checkpoints instead of getting a signature.
    pub async fn checkpoint(
        &self,
        keys: &KeyRing,
        log_key: &str,
        clock: &dyn Clock,
    ) -> Result<StoredCheckpoint, LogError> {
        let size = self.size().await?;
        let latest = self.store.latest_checkpoint().await?;
        if let Some(latest) = &latest {
            if latest.size == size {
                return Ok(latest.clone());
            }
            if latest.size > size {
                return Err(LogError::Inconsistent(format!(
                    "the log has {size} entries but a checkpoint of size {} was signed",
                    latest.size
                )));
            }
        }
        let root = self.root(size).await?;
        if let Some(latest) = latest.as_ref().filter(|l| l.size > 0) {
            let proof = self.consistency_proof(latest.size, size).await?;
            merkle::verify_consistency(latest.size, size, &latest.root, &root, &proof).map_err(
                |e| {
                    LogError::Inconsistent(format!(
                        "tree of size {size} does not extend checkpoint {}: {e:?}",
                        latest.size
                    ))
                },
            )?;
        }
        let body = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        }
        .body();
        let key = keys
            .get(log_key)
            .map_err(|e| LogError::Inconsistent(e.to_string()))?;
        let (active, spki) = key.active_with_public_key().ok_or_else(|| {
            LogError::Inconsistent(format!("log key {log_key} has no active version"))
        })?;
        let digest = Sha256::digest(body.as_bytes()).to_vec();
        let mut signatures = key
            .backend
            .sign(&active.backend_ref, Algorithm::ES256, vec![digest])
            .await?;
        let signature = signatures
            .pop()
            .ok_or_else(|| LogError::Inconsistent("backend returned no signature".into()))?;
        let checkpoint = StoredCheckpoint {
            size,
            root,
            note: sign_note(&body, &self.origin, ecdsa_key_id(&spki), &signature),
            created_at: clock.now_unix(),
        };
        self.store
            .insert_checkpoint(&checkpoint)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(reason) => LogError::Inconsistent(reason),
                other => LogError::Store(other),
            })?;
        Ok(checkpoint)
    }

    /// Checkpoints every `interval` while entries arrive.
    pub fn spawn_checkpointer(
        &self,
        keys: Arc<KeyRing>,
        log_key: String,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match log.checkpoint(&keys, &log_key, clock.as_ref()).await {
                    Ok(_) => {}
                    Err(LogError::Inconsistent(reason)) => {
                        tracing::error!(reason = %reason, "refusing to sign a checkpoint: the stored log is inconsistent")
                    }
                    Err(e) => tracing::warn!(error = %e, "could not make a checkpoint"),
                }
            }
        });
    }
}

fn merkle_error(error: MerkleError<()>) -> LogError {
    match error {
        MerkleError::OutOfRange(reason) => LogError::OutOfRange(reason.to_string()),
        MerkleError::Node(()) => LogError::Inconsistent("a Merkle node is missing".into()),
        MerkleError::Invalid(reason) => LogError::Inconsistent(reason.to_string()),
    }
}

/// The writer thread: takes every waiting request and commits them together.
fn write_loop(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<AppendRequestHandle>) {
    while let Some(AppendRequestHandle(first)) = receiver.blocking_recv() {
        let mut total = first.item.leaves.len();
        let mut items = vec![first.item];
        let mut replies = vec![first.reply];
        while total < MAX_LEAVES_PER_COMMIT {
            match receiver.try_recv() {
                Ok(AppendRequestHandle(next)) => {
                    total += next.item.leaves.len();
                    items.push(next.item);
                    replies.push(next.reply);
                }
                Err(_) => break,
            }
        }
        let appends = items.len();
        let started = std::time::Instant::now();
        let result = store.append_log_blocking(items);
        let took = started.elapsed();
        tracing::debug!(
            appends,
            leaves = total,
            commit_us = took.as_micros() as u64,
            "log commit"
        );
        if took >= SLOW_COMMIT {
            tracing::warn!(
                appends,
                leaves = total,
                took_ms = took.as_millis() as u64,
                "slow log commit: signing waits on it"
            );
        }
        match result {
            Ok(outcomes) if outcomes.len() == replies.len() => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(LogError::Inconsistent(
                        "the store answered for the wrong number of appends".into(),
                    )));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(LogError::Store(e.clone())));
                }
            }
        }
        store.after_append_blocking();
    }
}
