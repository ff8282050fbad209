//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 signatures: the verifier key
//! (`vkey`) a verifier pins, the key ID, and signing and checking note signature lines.
//!
//! A note is its text (ending in a newline), a blank line, then one line per signature:
//! `— <key name> base64(key ID || signature)`. An Ed25519 key's ID is the first four bytes of
//! SHA-256(name || 0x0A || 0x01 || public key); its vkey is `<name>+<hex key ID>+base64(0x01 ||
//! public key)`. Signatures by keys a verifier does not know are ignored, as the spec says.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// The largest note accepted (C2SP leaves it open; checkpoints are a few hundred bytes).
const MAX_NOTE_BYTES: usize = 64 * 1024;

/// Why a note or a verifier key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a signed note.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// Not a C2SP Ed25519 verifier key.
    #[error("malformed verifier key: {0}")]
    MalformedKey(&'static str),
    /// No signature line is by the expected key.
    #[error("the note is not signed by {0}")]
    NotSigned(String),
    /// A signature line by the expected key does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

/// An Ed25519 signed-note key of one signature type (0x01 for notes, 0x04 for cosignatures):
/// its name, key ID and public key, and its vkey text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ed25519Key {
    name: String,
    key_type: u8,
    key_id: [u8; 4],
    public_key: ed25519_dalek::VerifyingKey,
}

impl Ed25519Key {
    /// The key of `key_type` named `name` for the raw Ed25519 key `public_key`.
    pub(crate) fn new(
        name: &str,
        key_type: u8,
        public_key: &[u8; 32],
    ) -> Result<Ed25519Key, NoteError> {
        check_name(name)?;
        let public_key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        // The key ID: SHA-256(name || 0x0A || type || public key), first four bytes.
        let mut hasher = Sha256::new();
        hasher.update(name.as_bytes());
        hasher.update([b'\n', key_type]);
        hasher.update(public_key.as_bytes());
        let digest = hasher.finalize();
        Ok(Ed25519Key {
            name: name.to_string(),
            key_type,
            key_id: [digest[0], digest[1], digest[2], digest[3]],
            public_key,
        })
    }

    /// Parses `<name>+<8 hex key ID>+<base64(type || key)>` of `key_type`, checking the key ID;
    /// `wrong_type` is the error for a key of another type.
    pub(crate) fn parse(
        vkey: &str,
        key_type: u8,
        wrong_type: &'static str,
    ) -> Result<Ed25519Key, NoteError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey("expected <name>+<key ID>+<key>"));
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
        let Some((&found_type, raw)) = key.split_first() else {
            return Err(NoteError::MalformedKey("the key is empty"));
        };
        if found_type != key_type {
            return Err(NoteError::MalformedKey(wrong_type));
        }
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 key is 32 bytes"))?;
        let parsed = Ed25519Key::new(name, key_type, &raw)?;
        if id_hex.len() != 8 || hex::decode(id_hex).ok().as_deref() != Some(&parsed.key_id[..]) {
            return Err(NoteError::MalformedKey(
                "the key ID does not match the name and key",
            ));
        }
        Ok(parsed)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The vkey text.
    pub(crate) fn to_vkey(&self) -> String {
        let mut key = vec![self.key_type];
        key.extend_from_slice(self.public_key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            STANDARD.encode(key)
        )
    }

    /// Whether `signature` is this key's Ed25519 signature over `message` (strict: canonical
    /// encodings, no small-order keys).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| self.public_key.verify_strict(message, &s).is_ok())
    }

    /// A signature line by this key: its name, then base64(key ID || `blob`).
    pub(crate) fn signature_line(&self, blob: &[u8]) -> String {
        let mut bytes = self.key_id.to_vec();
        bytes.extend_from_slice(blob);
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(bytes))
    }

    /// The note's signature lines that name this key (others are ignored, as the spec says).
    pub(crate) fn lines<'n>(
        &'n self,
        note: &'n SignedNote,
    ) -> impl Iterator<Item = &'n SignatureLine> {
        note.signatures
            .iter()
            .filter(|line| line.name == self.name && line.key_id == self.key_id)
    }
}

/// An Ed25519 signed-note verifier key: a name and a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey(Ed25519Key);

impl VerifierKey {
    /// The verifier key named `name` for the raw Ed25519 key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<VerifierKey, NoteError> {
        Ed25519Key::new(name, ED25519_TYPE, public_key).map(VerifierKey)
    }

    /// Parses `<name>+<8 hex key ID>+<base64(0x01 || key)>`, checking the key ID.
    pub fn parse(vkey: &str) -> Result<VerifierKey, NoteError> {
        Ed25519Key::parse(vkey, ED25519_TYPE, "not an Ed25519 (type 0x01) key").map(VerifierKey)
    }

    /// The key's name (for a log, its origin).
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The four-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.0.key_id
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.public_key.to_bytes()
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// Whether `signature` is this key's Ed25519 signature over `text`.
    pub fn verifies(&self, text: &[u8], signature: &[u8]) -> bool {
        self.0.verifies(text, signature)
    }

    /// The signature line this key's `signature` over a note's text makes.
    pub fn signature_line(&self, signature: &[u8; 64]) -> String {
        self.0.signature_line(signature)
    }

    /// Checks that `note` carries a valid signature by this key; returns the note's text.
    pub fn verify<'n>(&self, note: &'n SignedNote) -> Result<&'n str, NoteError> {
        let mut signed = false;
        for line in self.0.lines(note) {
            if !self.verifies(note.text.as_bytes(), &line.signature) {
                return Err(NoteError::BadSignature(self.to_vkey()));
            }
            signed = true;
        }
        if signed {
            Ok(&note.text)
        } else {
            Err(NoteError::NotSigned(self.to_vkey()))
        }
    }
}

/// A key name: non-empty, no whitespace or '+' (C2SP signed-note).
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::MalformedKey(
            "the name must be non-empty, without spaces or '+'",
        ));
    }
    Ok(())
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub key_id: [u8; 4],
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, final newline included.
    pub text: String,
    /// Its signature lines, in order.
    pub signatures: Vec<SignatureLine>,
}

impl SignedNote {
    /// Splits a signed note into its text and signature lines.
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        if note.len() > MAX_NOTE_BYTES || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("not a signed note"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let text = &note[..split + 1];
        let mut signatures = Vec::new();
        for line in note[split + 2..].split_terminator('\n') {
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "a signature line must start with '— '",
            ))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("a signature line needs a name"))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            signatures.push(SignatureLine {
                name: name.to_string(),
                key_id: [blob[0], blob[1], blob[2], blob[3]],
                signature: blob[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signatures"));
        }
        Ok(SignedNote {
            text: text.to_string(),
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn the_key_id_and_vkey_follow_c2sp() {
        let signing = key(7);
        let vkey = VerifierKey::new("example.com/log", &signing.verifying_key().to_bytes())
            .expect("valid");
        let mut hasher = Sha256::new();
        hasher.update(b"example.com/log\n\x01");
        hasher.update(signing.verifying_key().as_bytes());
        assert_eq!(vkey.key_id()[..], hasher.finalize()[..4]);
        let text = vkey.to_vkey();
        assert_eq!(VerifierKey::parse(&text), Ok(vkey.clone()));
        // A vkey whose ID does not match its key, or of another type, is refused.
        let mut wrong_id = text.clone();
        wrong_id.replace_range(
            "example.com/log+".len().."example.com/log+".len() + 8,
            "00000000",
        );
        assert!(VerifierKey::parse(&wrong_id).is_err());
        assert!(VerifierKey::parse("example.com/log+00000000+AgAA").is_err());
    }

    #[test]
    fn a_signed_note_verifies_only_under_its_key() {
        let signing = key(1);
        let vkey =
            VerifierKey::new("signet.test/log", &signing.verifying_key().to_bytes()).expect("key");
        let text = "signet.test/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let signature = signing.sign(text.as_bytes()).to_bytes();
        let note = format!("{text}\n{}", vkey.signature_line(&signature));
        let parsed = SignedNote::parse(&note).expect("parses");
        assert_eq!(vkey.verify(&parsed), Ok(text));

        // Another key of the same name: not signed by it.
        let other =
            VerifierKey::new("signet.test/log", &key(2).verifying_key().to_bytes()).expect("key");
        assert!(matches!(
            other.verify(&parsed),
            Err(NoteError::NotSigned(_))
        ));
        // The text changed under the signature.
        let tampered = SignedNote::parse(&note.replacen("\n3\n", "\n4\n", 1)).expect("parses");
        assert!(matches!(
            vkey.verify(&tampered),
            Err(NoteError::BadSignature(_))
        ));
    }
}
