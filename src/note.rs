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

/// An Ed25519 signed-note verifier key: a name and a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    public_key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// The verifier key named `name` for the raw Ed25519 key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<VerifierKey, NoteError> {
        check_name(name)?;
        let public_key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        Ok(VerifierKey {
            name: name.to_string(),
            key_id: key_id(name, ED25519_TYPE, public_key.as_bytes()),
            public_key,
        })
    }

    /// Parses `<name>+<8 hex key ID>+<base64(0x01 || key)>`, checking the key ID.
    pub fn parse(vkey: &str) -> Result<VerifierKey, NoteError> {
        let (name, key_id, key_type, raw) = split_vkey(vkey)?;
        if key_type != ED25519_TYPE {
            return Err(NoteError::MalformedKey("not an Ed25519 (type 0x01) key"));
        }
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 key is 32 bytes"))?;
        let parsed = VerifierKey::new(name, &raw)?;
        if parsed.key_id != key_id {
            return Err(NoteError::MalformedKey(
                "the key ID does not match the name and key",
            ));
        }
        Ok(parsed)
    }

    /// The key's name (for a log, its origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The four-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key.to_bytes()
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        let mut key = vec![ED25519_TYPE];
        key.extend_from_slice(self.public_key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            STANDARD.encode(key)
        )
    }

    /// Whether `signature` is this key's Ed25519 signature over `text` (strict: canonical
    /// encodings, no small-order keys).
    pub fn verifies(&self, text: &[u8], signature: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| self.public_key.verify_strict(text, &s).is_ok())
    }

    /// The signature line this key's `signature` over a note's text makes.
    pub fn signature_line(&self, signature: &[u8; 64]) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(signature);
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }

    /// Checks that `note` carries a valid signature by this key; returns the note's text.
    pub fn verify<'n>(&self, note: &'n SignedNote) -> Result<&'n str, NoteError> {
        let mut signed = false;
        for line in note.signatures.iter() {
            if line.name != self.name || line.key_id != self.key_id {
                continue;
            }
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

/// A signed-note key ID: SHA-256(name || 0x0A || type || public key)[:4].
pub(crate) fn key_id(name: &str, key_type: u8, public_key: &[u8]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', key_type]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A vkey's parts: name, key ID, type byte and key bytes.
pub(crate) type VkeyParts<'a> = (&'a str, [u8; 4], u8, Vec<u8>);

/// Splits a vkey `<name>+<8 hex key ID>+<base64(type || key)>` into its parts (the key ID is
/// checked by the caller, who knows the type).
pub(crate) fn split_vkey(vkey: &str) -> Result<VkeyParts<'_>, NoteError> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(encoded)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::MalformedKey("expected <name>+<key ID>+<key>"));
    };
    let key_id: [u8; 4] = hex::decode(id_hex)
        .ok()
        .filter(|_| id_hex.len() == 8)
        .and_then(|id| id.try_into().ok())
        .ok_or(NoteError::MalformedKey("the key ID is not 8 hex digits"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
    let (&key_type, raw) = key
        .split_first()
        .ok_or(NoteError::MalformedKey("the key is empty"))?;
    Ok((name, key_id, key_type, raw.to_vec()))
}

/// A key name: non-empty, no whitespace or '+' (C2SP signed-note).
pub(crate) fn check_name(name: &str) -> Result<(), NoteError> {
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
