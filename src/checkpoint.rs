//! Checkpoints in the C2SP `tlog-checkpoint` format, as C2SP `signed-note`s.
//!
//! Body: `<origin>\n<tree size>\n<base64 root hash>\n`, signed by the log key alone (Ed25519,
//! signature type 0x01, key name = origin), so any C2SP or Go `sumdb/note` verifier, and any
//! witness, can check it. A verifier accepts a checkpoint only under the log key it pinned.
//!
//! signet adds one extension line, `time <unix seconds>`: when the log key signed it. Verifiers
//! use it to refuse stale trust roots; the daemon signs the same tree again when its latest
//! checkpoint grows old, so a quiet log still has a fresh checkpoint.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::note::{NoteError, SignedNote, VerifierKey};

/// The unsigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// When it was signed (Unix seconds), from the `time` extension line.
    pub time: Option<i64>,
}

/// A number as the C2SP text formats write it (checkpoints, tiles, witness requests, proofs):
/// ASCII decimal digits with no leading zeroes, `0` alone for zero, within a u64.
pub fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// Why a checkpoint note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a signed note, or not a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The origin is not the expected one.
    #[error("checkpoint origin {found:?} is not {expected:?}")]
    WrongOrigin {
        /// The expected origin.
        expected: String,
        /// What the note says.
        found: String,
    },
    /// The note is malformed or not validly signed by the pinned log key.
    #[error("checkpoint signature: {0}")]
    Note(#[from] NoteError),
}

impl Checkpoint {
    /// The note text that is signed.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        if let Some(time) = self.time {
            body.push_str(&format!("time {time}\n"));
        }
        body
    }

    /// Parses a checkpoint body (extension lines are ignored).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let text = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("body must end in a newline"))?;
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("no origin"))?;
        let size = lines
            .next()
            .ok_or(CheckpointError::Malformed("no tree size"))?;
        let size = canonical_decimal(size).ok_or(CheckpointError::Malformed(
            "tree size is not a decimal number within range",
        ))?;
        let root = lines
            .next()
            .ok_or(CheckpointError::Malformed("no root hash"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "root hash is not base64 of 32 bytes",
            ))?;
        let mut time = None;
        for line in lines {
            if line.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            if let Some(value) = line.strip_prefix("time ") {
                if time.is_some() {
                    return Err(CheckpointError::Malformed("two time lines"));
                }
                time = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|t| *t >= 0 && value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or(CheckpointError::Malformed("time is not Unix seconds"))?,
                );
            }
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            time,
        })
    }
}

/// Verifies a signed checkpoint under the pinned log key: its origin must be the key's name,
/// and a signature line by that key must verify. Signatures by other keys (witnesses) are
/// ignored here.
pub fn verify_checkpoint(note: &str, log_key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
    let parsed = SignedNote::parse(note)?;
    let checkpoint = Checkpoint::parse_body(&parsed.text)?;
    if checkpoint.origin != log_key.name() {
        return Err(CheckpointError::WrongOrigin {
            expected: log_key.name().to_string(),
            found: checkpoint.origin,
        });
    }
    log_key.verify(&parsed)?;
    Ok(checkpoint)
}

/// The signed checkpoint note: the body and the log key's signature line.
pub fn signed_checkpoint(body: &str, log_key: &VerifierKey, signature: &[u8; 64]) -> String {
    format!("{body}\n{}", log_key.signature_line(signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    #[test]
    fn signs_and_verifies_a_checkpoint_under_the_pinned_key_only() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let log_key =
            VerifierKey::new("signet.test/log", &key.verifying_key().to_bytes()).expect("vkey");
        let checkpoint = Checkpoint {
            origin: "signet.test/log".into(),
            size: 42,
            root: [7; 32],
            time: Some(1_700_000_000),
        };
        let body = checkpoint.body();
        let note = signed_checkpoint(&body, &log_key, &key.sign(body.as_bytes()).to_bytes());
        assert_eq!(verify_checkpoint(&note, &log_key), Ok(checkpoint.clone()));

        let tampered = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            verify_checkpoint(&tampered, &log_key),
            Err(CheckpointError::Note(NoteError::BadSignature(_)))
        ));
        // Signed by another key under the same name: refused, whatever else it is.
        let forger = ed25519_dalek::SigningKey::from_bytes(&[10; 32]);
        let forged_key =
            VerifierKey::new("signet.test/log", &forger.verifying_key().to_bytes()).expect("vkey");
        let forged =
            signed_checkpoint(&body, &forged_key, &forger.sign(body.as_bytes()).to_bytes());
        assert!(matches!(
            verify_checkpoint(&forged, &log_key),
            Err(CheckpointError::Note(NoteError::NotSigned(_)))
        ));
        // The pinned key's own signature over another origin's checkpoint.
        let other = Checkpoint {
            origin: "other.test/log".into(),
            ..checkpoint
        };
        let other_key =
            VerifierKey::new("other.test/log", &key.verifying_key().to_bytes()).expect("vkey");
        let body = other.body();
        let note = signed_checkpoint(&body, &other_key, &key.sign(body.as_bytes()).to_bytes());
        assert!(matches!(
            verify_checkpoint(&note, &log_key),
            Err(CheckpointError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn parses_the_c2sp_example_body() {
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let checkpoint = Checkpoint::parse_body(body).expect("parses");
        assert_eq!(checkpoint.size, 20852163);
        assert_eq!(checkpoint.body(), body);
        assert_eq!(checkpoint.time, None);
        assert!(Checkpoint::parse_body("o\n012\nAA==\n").is_err());
        let timed = format!("{body}time 1700000000\n");
        assert_eq!(
            Checkpoint::parse_body(&timed).expect("parses").time,
            Some(1_700_000_000)
        );
        assert!(Checkpoint::parse_body(&format!("{body}time -1\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("{timed}time 1\n")).is_err());
    }
}
