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
use crate::tlog_proof::TlogProof;

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
    /// The same as a C2SP tlog-proof (the entry in `extra`), checkable without signet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_proof: Option<String>,
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

    /// Writes each signature's tlog-proof from the receipt's own entries and checkpoint.
    pub fn with_tlog_proofs(mut self) -> Result<Receipt, ReceiptError> {
        for entry in [&mut self.manifest_signature, &mut self.model_sig] {
            let leaf = STANDARD
                .decode(&entry.leaf_input)
                .map_err(|_| ReceiptError::Malformed("leaf_input is not base64".into()))?;
            let proof = merkle::decode_hashes(&entry.inclusion_proof).ok_or_else(|| {
                ReceiptError::Malformed("an inclusion proof hash is not base64 of 32 bytes".into())
            })?;
            let text = TlogProof {
                extra: Some(leaf),
                index: entry.log_index,
                proof,
                checkpoint: self.checkpoint.clone(),
            }
            .encode();
            entry.tlog_proof = Some(text);
        }
        Ok(self)
    }

    /// Checks each tlog-proof the receipt carries on its own, as a verifier without signet
    /// would, and that it proves the same entry at the same place under the same checkpoint: a
    /// proof that disagrees with the receipt is refused, not ignored.
    pub fn check_tlog_proofs(&self, log_key: &VerifierKey) -> Result<(), ReceiptError> {
        for entry in [&self.manifest_signature, &self.model_sig] {
            let Some(text) = &entry.tlog_proof else {
                continue;
            };
            let proof = TlogProof::parse(text)
                .map_err(|e| ReceiptError::Malformed(format!("tlog_proof: {e}")))?;
            let (_, leaf) = proof
                .verify(log_key)
                .map_err(|e| ReceiptError::Malformed(format!("tlog_proof: {e}")))?;
            let same = proof.index == entry.log_index
                && proof.checkpoint == self.checkpoint
                && STANDARD.encode(leaf) == entry.leaf_input;
            if !same {
                return Err(ReceiptError::Malformed(format!(
                    "the tlog_proof of log entry {} proves something else",
                    entry.log_index
                )));
            }
        }
        Ok(())
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
