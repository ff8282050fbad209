//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`, pure): one log entry's offline proof, checkable
//! without signet: the entry itself in the `extra` line, its index, its inclusion proof and the
//! signed checkpoint the proof leads to. Receipts carry one per signature.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::{Checkpoint, CheckpointError, canonical_decimal, verify_checkpoint};
use crate::merkle::{self, Hash};
use crate::note::VerifierKey;

/// The format's first line.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The `extra` data: for signet, the entry's leaf bytes.
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof, leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// Not a tlog-proof.
    #[error("not a c2sp.org/tlog-proof@v1: {0}")]
    Malformed(&'static str),
    /// The checkpoint is not the pinned log's.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The entry is not in the checkpoint's tree.
    #[error("entry {index} is not included in the checkpoint of size {size}: {reason}")]
    NotIncluded {
        /// The entry.
        index: u64,
        /// The checkpoint's size.
        size: u64,
        /// Why.
        reason: &'static str,
    },
}

impl TlogProof {
    /// The proof's text.
    pub fn encode(&self) -> String {
        let mut text = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            text.push_str(&STANDARD.encode(hash));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a proof's text.
    pub fn parse(text: &str) -> Result<TlogProof, TlogProofError> {
        let bad = TlogProofError::Malformed;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(HEADER) {
            return Err(bad("the first line must be c2sp.org/tlog-proof@v1"));
        }
        let extra = match lines.peek().and_then(|l| l.strip_prefix("extra ")) {
            Some(encoded) => {
                let extra = STANDARD
                    .decode(encoded)
                    .map_err(|_| bad("extra is not base64"))?;
                lines.next();
                Some(extra)
            }
            None => None,
        };
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .and_then(canonical_decimal)
            .ok_or(bad("expected `index <n>`"))?;
        let proof_lines: Vec<&str> = lines.collect();
        let proof = merkle::decode_hashes(&proof_lines)
            .ok_or(bad("a proof line is not a base64 SHA-256 hash"))?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Checks the checkpoint under the pinned log key and that `extra` (the entry) is included
    /// at `index`; returns the checkpoint and the entry.
    pub fn verify(&self, log_key: &VerifierKey) -> Result<(Checkpoint, &[u8]), TlogProofError> {
        let checkpoint = verify_checkpoint(&self.checkpoint, log_key)?;
        let leaf = self.extra.as_deref().ok_or(TlogProofError::Malformed(
            "signet's proofs carry the entry in extra",
        ))?;
        merkle::verify_inclusion(
            self.index,
            checkpoint.size,
            &merkle::leaf_hash(leaf),
            &self.proof,
            &checkpoint.root,
        )
        .map_err(|e| TlogProofError::NotIncluded {
            index: self.index,
            size: checkpoint.size,
            reason: e.0,
        })?;
        Ok((checkpoint, leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_round_trip_and_refuse_what_the_format_does_not_allow() {
        let proof = TlogProof {
            extra: Some(b"{\"kind\":\"signature\"}".to_vec()),
            index: 73894,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} o AAAA\n"
                .into(),
        };
        let text = proof.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        assert_eq!(TlogProof::parse(&text), Ok(proof.clone()));
        let bare = TlogProof {
            extra: None,
            ..proof.clone()
        };
        assert_eq!(TlogProof::parse(&bare.encode()), Ok(bare));
        for bad in [
            text.replacen("tlog-proof@v1", "tlog-proof@v2", 1),
            text.replacen("index 73894", "index 073894", 1),
            text.replacen("index 73894", "index", 1),
            text.replacen("\n\n", "\n", 1),
        ] {
            assert!(TlogProof::parse(&bad).is_err(), "{bad}");
        }
    }
}
