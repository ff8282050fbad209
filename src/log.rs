//! The tamper-evident log: an append-only RFC 9162 Merkle tree of events in the store, durable
//! before anything is acknowledged, with signed checkpoints anyone can check from outside.
//!
//! Appends are group-committed: callers hand their leaves to one writer task, which takes every
//! request waiting at that moment and commits them in one transaction (one fsync). While a
//! commit runs, new requests queue for the next one, so the log keeps pace with signing.
pub mod anchor;
pub mod event;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::backend::BackendError;
use crate::canonical::CanonicalError;
use crate::checkpoint::{Checkpoint, signed_checkpoint, verify_checkpoint};
use crate::clock::Clock;
use crate::merkle::{self, Hash, MerkleError, Tree};
use crate::note::VerifierKey;
use crate::store::{
    AppendOutcome, KeyChange, LogAppend, QuotaCharge, Store, StoreError, StoredCheckpoint,
    StoredEntry,
};
use anchor::{Anchor, AnchorError, AnchoredTree};
use event::LogEvent;

/// Most leaves committed in one transaction.
const MAX_LEAVES_PER_COMMIT: usize = 10_000;
/// A commit at least this slow is logged as a warning (the disk or the host stalled).
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// A tree that stops growing is signed again after this long, so its checkpoint's time (which
/// verifiers check for freshness) stays recent.
pub const CHECKPOINT_REFRESH: Duration = Duration::from_secs(3600);
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

/// What signs checkpoints: the log key, wherever it lives. The log sees only this, never the
/// key ring.
#[async_trait]
pub trait CheckpointSigner: Send + Sync {
    /// The log's verifier key; its name is the origin.
    fn verifier(&self) -> &VerifierKey;
    /// An Ed25519 signature over `message`.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError>;
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

    /// Signs and stores a checkpoint of the current tree unless the latest stored one already
    /// covers it under the log key. Before signing, proves the tree consistent with the anchor
    /// (the last tree this checkpointer signed, kept outside the store), so an edited store gets
    /// no signature: checkpoint signing then stops for good (until a restart) and the reason is
    /// kept for `/readyz`.
    pub async fn checkpoint(
        &self,
        signer: &dyn CheckpointSigner,
        anchor: &dyn Anchor,
        clock: &dyn Clock,
    ) -> Result<StoredCheckpoint, LogError> {
        if let Some(reason) = self.halted() {
            return Err(LogError::Inconsistent(reason));
        }
        let outcome = self.checkpoint_unhalted(signer, anchor, clock).await;
        if let Err(LogError::Inconsistent(reason)) = &outcome
            && let Ok(mut halted) = self.halted.write()
        {
            halted.get_or_insert_with(|| reason.clone());
        }
        outcome
    }

    async fn checkpoint_unhalted(
        &self,
        signer: &dyn CheckpointSigner,
        anchor: &dyn Anchor,
        clock: &dyn Clock,
    ) -> Result<StoredCheckpoint, LogError> {
        let log_key = signer.verifier();
        let size = self.size().await?;
        let root = self.root(size).await?;
        match anchor.load()? {
            Some(anchored) => self.check_against(&anchored, size, &root).await?,
            // First run (or an upgrade): the latest stored checkpoint that the log key signed,
            // if any, stands in for the anchor.
            None => {
                if let Some(latest) = self.store.latest_checkpoint().await?
                    && verify_checkpoint(&latest.note, log_key).is_ok()
                {
                    let tree = AnchoredTree {
                        origin: self.origin.clone(),
                        size: latest.size,
                        root: latest.root,
                    };
                    self.check_against(&tree, size, &root).await?;
                }
            }
        }
        let latest = self.store.latest_checkpoint().await?;
        if let Some(latest) = &latest {
            if latest.size > size {
                return Err(LogError::Inconsistent(format!(
                    "the log has {size} entries but a checkpoint of size {} is stored",
                    latest.size
                )));
            }
            // Already signed by the log key, recently (one made before an upgrade, under
            // another key, or grown old, is signed again).
            let fresh = verify_checkpoint(&latest.note, log_key).is_ok_and(|c| {
                c.time.is_some_and(|t| {
                    clock.now_unix().saturating_sub(t) < CHECKPOINT_REFRESH.as_secs() as i64
                })
            });
            if latest.size == size && latest.root == root && fresh {
                anchor.record(&AnchoredTree {
                    origin: self.origin.clone(),
                    size,
                    root,
                })?;
                return Ok(latest.clone());
            }
        }
        let body = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            time: Some(clock.now_unix()),
        }
        .body();
        let signature = signer.sign(body.as_bytes()).await?;
        // A backend that lies (or a misconfigured key) must not publish a checkpoint.
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|s: Vec<u8>| LogError::BadSignature(format!("{} bytes", s.len())))?;
        if !log_key.verifies(body.as_bytes(), &signature) {
            return Err(LogError::BadSignature(format!(
                "not by {}",
                log_key.to_vkey()
            )));
        }
        let checkpoint = StoredCheckpoint {
            size,
            root,
            note: signed_checkpoint(&body, log_key, &signature),
            created_at: clock.now_unix(),
        };
        // The anchor moves first: a crash between the two leaves it ahead of the store, which
        // the next checkpoint proves consistent as usual.
        anchor.record(&AnchoredTree {
            origin: self.origin.clone(),
            size,
            root,
        })?;
        self.store
            .insert_checkpoint(&checkpoint)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(reason) => LogError::Inconsistent(reason),
                other => LogError::Store(other),
            })?;
        Ok(checkpoint)
    }

    /// The tree of `size` leaves with `root` must extend `anchored`.
    async fn check_against(
        &self,
        anchored: &AnchoredTree,
        size: u64,
        root: &Hash,
    ) -> Result<(), LogError> {
        if anchored.origin != self.origin {
            return Err(LogError::Inconsistent(format!(
                "the checkpoint anchor is for origin {:?}, not {:?}",
                anchored.origin, self.origin
            )));
        }
        if anchored.size > size {
            return Err(LogError::Inconsistent(format!(
                "the stored log has {size} entries, but a checkpoint of {} was signed: entries \
                 were removed",
                anchored.size
            )));
        }
        if anchored.size == size {
            if anchored.root != *root {
                return Err(LogError::Inconsistent(format!(
                    "the stored tree of {size} entries has another root than the one signed"
                )));
            }
            return Ok(());
        }
        if anchored.size == 0 {
            return Ok(());
        }
        let proof = self.consistency_proof(anchored.size, size).await?;
        merkle::verify_consistency(anchored.size, size, &anchored.root, root, &proof).map_err(|e| {
            LogError::Inconsistent(format!(
                "the stored tree of {size} entries does not extend the signed checkpoint of \
                     {}: {e:?}",
                anchored.size
            ))
        })
    }

    /// Checkpoints every `interval` while entries arrive.
    pub fn spawn_checkpointer(
        &self,
        signer: Arc<dyn CheckpointSigner>,
        anchor: Arc<dyn Anchor>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reported = false;
            loop {
                ticker.tick().await;
                match log
                    .checkpoint(signer.as_ref(), anchor.as_ref(), clock.as_ref())
                    .await
                {
                    Ok(_) => {}
                    Err(LogError::Inconsistent(reason)) => {
                        if !reported {
                            tracing::error!(reason = %reason, "refusing to sign checkpoints: the stored log is inconsistent with what was signed before");
                            reported = true;
                        }
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
