//! A C2SP tlog-witness (`signet witness serve`): it cosigns a log's checkpoint only when the
//! log's own key signed it and it is consistent with the largest tree the witness cosigned for
//! that log before. Run by a security team apart from the signet operator, it makes a split
//! view (two histories shown to two verifiers) need the witness's key too.
//!
//! The check against the stored tree and the update to the new one happen in one store
//! transaction, so two racing requests can never roll the witness's view back.
pub mod config;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, canonical_decimal};
use crate::clock::Clock;
use crate::cosignature::Cosigner;
use crate::merkle::{self, Hash};
use crate::note::{SignedNote, VerifierKey};
use store::{Stored, WitnessStore};

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Why a checkpoint was not cosigned; each is one of the spec's HTTP answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// 400: the request is not an add-checkpoint body, or its old size is past its checkpoint.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the witness does not know this log.
    #[error("unknown log {0}")]
    UnknownLog(String),
    /// 403: no signature by the log's key verifies.
    #[error("the checkpoint is not signed by the log's key")]
    NotSigned,
    /// 409: the old size is not the size the witness last cosigned (which it names).
    #[error("the witness's latest cosigned size for this log is {0}")]
    Conflict(u64),
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify: {0}")]
    Inconsistent(String),
    /// 500: the witness's state could not be read or written.
    #[error("witness state: {0}")]
    Store(String),
}

/// A witness: its key, the logs it follows and its state.
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, VerifierKey>,
    store: WitnessStore,
    clock: Arc<dyn Clock>,
}

/// A parsed add-checkpoint body.
struct Request<'a> {
    old: u64,
    proof: Vec<Hash>,
    checkpoint: &'a str,
}

impl Witness {
    /// A witness cosigning with `cosigner` for `logs` (origin → the log's key).
    pub fn new(
        cosigner: Cosigner,
        logs: Vec<VerifierKey>,
        store: WitnessStore,
        clock: Arc<dyn Clock>,
    ) -> Witness {
        let logs = logs
            .into_iter()
            .map(|key| (key.name().to_string(), key))
            .collect();
        Witness {
            cosigner,
            logs,
            store,
            clock,
        }
    }

    /// Handles an add-checkpoint body; returns the cosignature line.
    pub async fn add_checkpoint(&self, body: &str) -> Result<String, WitnessError> {
        let request = parse_request(body)?;
        let note = SignedNote::parse(request.checkpoint)
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let checkpoint = Checkpoint::parse_body(&note.text)
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let log_key = self
            .logs
            .get(&checkpoint.origin)
            .ok_or_else(|| WitnessError::UnknownLog(checkpoint.origin.clone()))?;
        log_key.verify(&note).map_err(|_| WitnessError::NotSigned)?;
        if request.old > checkpoint.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is past the checkpoint's size {}",
                request.old, checkpoint.size
            )));
        }
        let origin = checkpoint.origin.clone();
        let note_text = note.text.clone();
        let checkpoint_note = request.checkpoint.to_string();
        let proof = request.proof;
        let old = request.old;
        let new = Stored {
            size: checkpoint.size,
            root: checkpoint.root,
            note: checkpoint_note,
        };
        self.store
            .advance(origin, move |stored| {
                check(stored, old, &proof, &new).map(|()| new)
            })
            .await?;
        let timestamp = u64::try_from(self.clock.now_unix()).unwrap_or(0);
        Ok(self.cosigner.cosign(&note_text, timestamp))
    }
}

/// The spec's checks of a request against the witness's latest cosigned tree.
fn check(
    stored: Option<&Stored>,
    old: u64,
    proof: &[Hash],
    new: &Stored,
) -> Result<(), WitnessError> {
    let (stored_size, stored_root) = stored.map_or((0, None), |s| (s.size, Some(s.root)));
    if old != stored_size {
        return Err(WitnessError::Conflict(stored_size));
    }
    let Some(stored_root) = stored_root else {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(WitnessError::BadRequest(
                "a proof from size 0 must be empty".into(),
            ))
        };
    };
    if old == new.size {
        return if stored_root == new.root && proof.is_empty() {
            Ok(())
        } else {
            Err(WitnessError::Conflict(stored_size))
        };
    }
    merkle::verify_consistency(old, new.size, &stored_root, &new.root, proof)
        .map_err(|e| WitnessError::Inconsistent(e.0.to_string()))
}

fn parse_request(body: &str) -> Result<Request<'_>, WitnessError> {
    let bad = |reason: &str| WitnessError::BadRequest(reason.to_string());
    if body.len() > MAX_REQUEST_BYTES {
        return Err(bad("the request is too large"));
    }
    let (head, checkpoint) = body
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(canonical_decimal)
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    let proof_lines: Vec<&str> = lines.collect();
    let proof = merkle::decode_hashes(&proof_lines)
        .ok_or_else(|| bad("a proof line is not a base64 SHA-256 hash"))?;
    if proof.len() > MAX_PROOF_LINES {
        return Err(bad("more than 63 proof lines"));
    }
    Ok(Request {
        old,
        proof,
        checkpoint,
    })
}

#[cfg(test)]
mod tests;
