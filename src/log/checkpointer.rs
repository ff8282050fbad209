//! The checkpointer: signs a checkpoint of the tree through the log key's `CheckpointSigner`,
//! only after proving the tree consistent with its anchor (the last tree it signed, kept outside
//! the store); on a mismatch it stops for good and says why.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::anchor::{Anchor, AnchoredTree};
use super::{Log, LogError};
use crate::backend::BackendError;
use crate::checkpoint::{Checkpoint, signed_checkpoint, verify_checkpoint};
use crate::clock::Clock;
use crate::merkle::{self, Hash};
use crate::note::VerifierKey;
use crate::store::{StoreError, StoredCheckpoint};

/// A tree that stops growing is signed again after this long, so its checkpoint's time (which
/// verifiers check for freshness) stays recent.
pub const CHECKPOINT_REFRESH: Duration = Duration::from_secs(3600);

/// What signs checkpoints: the log key, wherever it lives. The log sees only this, never the
/// key ring.
#[async_trait]
pub trait CheckpointSigner: Send + Sync {
    /// The log's verifier key; its name is the origin.
    fn verifier(&self) -> &VerifierKey;
    /// An Ed25519 signature over `message`.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError>;
}

impl Log {
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

    /// Checkpoints every `interval` while entries arrive; runs until its task is aborted.
    pub fn run_checkpointer(
        &self,
        signer: Arc<dyn CheckpointSigner>,
        anchor: Arc<dyn Anchor>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let log = self.clone();
        async move {
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
        }
    }
}
