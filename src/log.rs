//! The tamper-evident log: an append-only RFC 9162 Merkle tree of events in the store, durable
//! before anything is acknowledged, with signed checkpoints anyone can check from outside.
//!
//! Appends are group-committed: callers hand their leaves to one writer task, which takes every
//! request waiting at that moment and commits them in one transaction (one fsync). While a
//! commit runs, new requests queue for the next one, so the log keeps pace with signing.
pub mod anchor;
mod checkpointer;
pub mod event;
pub mod recorder;
mod tiles;

pub use checkpointer::{CHECKPOINT_REFRESH, CheckpointSigner};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::backend::BackendError;
use crate::canonical::CanonicalError;
use crate::merkle::{Hash, MerkleError, Tree};
use crate::store::{
    AppendOutcome, KeyChange, LogAppend, QuotaCharge, Store, StoreError, StoredCheckpoint,
    StoredEntry,
};
use anchor::AnchorError;
use event::LogEvent;

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
    /// The log key's backend failed to sign a checkpoint.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The log key's backend answered with a signature that does not verify under the log key:
    /// nothing is published.
    #[error("the log key's backend returned a checkpoint signature that does not verify: {0}")]
    BadSignature(String),
    /// The checkpointer's anchor could not be read or written.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
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
    /// Why checkpoint signing stopped, once the stored log was found inconsistent with what
    /// was signed before. It stays stopped until an operator restarts the daemon.
    halted: Arc<std::sync::RwLock<Option<String>>>,
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
            halted: Arc::new(std::sync::RwLock::new(None)),
        }
    }

    /// Why checkpoint signing has stopped, if it has (the stored log was tampered with).
    pub fn halted(&self) -> Option<String> {
        self.halted.read().ok().and_then(|h| h.clone())
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends events; returns the index of the first once the commit is durable.
    pub async fn append(&self, events: &[LogEvent]) -> Result<u64, LogError> {
        match self.submit(None, None, None, events).await? {
            AppendOutcome::Appended { first_index, .. } => Ok(first_index),
            AppendOutcome::Refused(_) | AppendOutcome::Stale(_) => Err(LogError::Inconsistent(
                "an uncharged append was refused".into(),
            )),
        }
    }

    /// Charges a session's quota and appends signature events in the same durable commit:
    /// either both happen or neither does. `Stale` when `version` of `key` is no longer active
    /// at that place in the log.
    pub async fn append_signatures(
        &self,
        charge: QuotaCharge,
        key: &str,
        version: u32,
        events: &[LogEvent],
    ) -> Result<AppendOutcome, LogError> {
        self.submit(Some(charge), None, Some((key.to_string(), version)), events)
            .await
    }

    /// Charges a session's quota alone (a benchmark's signing without log entries).
    #[cfg(feature = "bench-unlogged")]
    pub async fn charge(&self, charge: QuotaCharge) -> Result<AppendOutcome, LogError> {
        self.submit(Some(charge), None, None, &[]).await
    }

    /// Applies a key change and appends the events recording it in the same durable commit;
    /// `Stale` if the change no longer applies.
    pub async fn append_key_change(
        &self,
        change: KeyChange,
        events: &[LogEvent],
    ) -> Result<AppendOutcome, LogError> {
        self.submit(None, Some(change), None, events).await
    }

    async fn submit(
        &self,
        charge: Option<QuotaCharge>,
        key_change: Option<KeyChange>,
        signing_version: Option<(String, u32)>,
        events: &[LogEvent],
    ) -> Result<AppendOutcome, LogError> {
        let leaves = events
            .iter()
            .map(LogEvent::to_leaf)
            .collect::<Result<Vec<_>, _>>()?;
        // An entry bundle holds entries of at most 65,535 bytes: a longer leaf would make the log
        // unservable as tiles, so it is refused, never cut (callers bound what they put in).
        if let Some(long) = leaves
            .iter()
            .find(|l| l.len() > crate::tiles::MAX_ENTRY_BYTES)
        {
            return Err(LogError::OutOfRange(format!(
                "a log entry of {} bytes is over the {} a log entry may hold",
                long.len(),
                crate::tiles::MAX_ENTRY_BYTES
            )));
        }
        let (reply, answer) = oneshot::channel();
        let item = LogAppend {
            charge,
            key_change,
            signing_version,
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
