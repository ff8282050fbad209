//! `signet-receipt.json`: what a verifier needs to check, offline, that a signature is in the
//! log: the key version that signed, each signature's log entry (the exact leaf bytes), its
//! inclusion proof, and the signed checkpoint the proofs lead to.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{Checkpoint, CheckpointError, verify_checkpoint};
use crate::merkle;
use crate::note::VerifierKey;

/// The receipt format's version.
pub const RECEIPT_VERSION: u32 = 1;

/// One signature's place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedSignature {
    /// The entry's index.
    pub log_index: u64,
    /// The entry's leaf bytes (canonical JSON), base64.
    pub leaf_input: String,
    /// RFC 9162 inclusion proof against the receipt's checkpoint, base64 hashes.
    pub inclusion_proof: Vec<String>,
}

/// The receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Format version.
    pub receipt_version: u32,
    /// The logical key.
    pub key: String,
    /// The version that signed.
    pub key_version: u32,
    /// Its kid in the JWKS.
    pub key_id: String,
    /// JOSE algorithm.
    pub algorithm: String,
    /// `manifest.json.sig`'s entry.
    #[serde(flatten)]
    pub manifest_signature: LoggedSignature,
    /// `model.sig`'s (DSSE) entry.
    pub model_sig: LoggedSignature,
    /// The signed checkpoint (C2SP signed note) both proofs lead to.
    pub checkpoint: String,
}

/// Why a receipt does not prove what it claims.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The checkpoint's signature or format is bad.
    #[error("the receipt's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The receipt is malformed.
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    /// The inclusion proof fails.
    #[error("log entry {index} is not included in the checkpoint of size {size}: {reason}")]
    NotIncluded {
        /// The entry.
        index: u64,
        /// The checkpoint's size.
        size: u64,
        /// Why.
        reason: &'static str,
    },
}

/// A logged signature whose inclusion is proven: its entry, parsed.
#[derive(Debug, Clone)]
pub struct ProvenEntry {
    /// The entry's index.
    pub index: u64,
    /// The exact leaf bytes.
    pub leaf: Vec<u8>,
    /// The leaf as JSON.
    pub event: Value,
}

impl Receipt {
    /// Verifies the checkpoint under the pinned log key (and origin); returns it.
    pub fn checkpoint(&self, log_key: &VerifierKey) -> Result<Checkpoint, ReceiptError> {
        Ok(verify_checkpoint(&self.checkpoint, log_key)?)
    }
}

impl LoggedSignature {
    /// Proves this entry's inclusion in `checkpoint` and parses it.
    pub fn prove(&self, checkpoint: &Checkpoint) -> Result<ProvenEntry, ReceiptError> {
        let leaf = STANDARD
            .decode(&self.leaf_input)
            .map_err(|_| ReceiptError::Malformed("leaf_input is not base64".into()))?;
        let proof = merkle::decode_hashes(&self.inclusion_proof).ok_or_else(|| {
            ReceiptError::Malformed("an inclusion proof hash is not base64 of 32 bytes".into())
        })?;
        merkle::verify_inclusion(
            self.log_index,
            checkpoint.size,
            &merkle::leaf_hash(&leaf),
            &proof,
            &checkpoint.root,
        )
        .map_err(|e| ReceiptError::NotIncluded {
            index: self.log_index,
            size: checkpoint.size,
            reason: e.0,
        })?;
        let event: Value = serde_json::from_slice(&leaf).map_err(|_| {
            ReceiptError::Malformed(format!("log entry {} is not JSON", self.log_index))
        })?;
        Ok(ProvenEntry {
            index: self.log_index,
            leaf,
            event,
        })
    }
}
