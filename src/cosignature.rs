//! C2SP tlog-cosignature v1 with Ed25519 (pure): a witness's statement that, at a time, the
//! checkpoint is the largest consistent tree it has seen of that log. The witness key's ID is
//! the first four bytes of SHA-256(name || 0x0A || 0x04 || key) and its vkey has type 0x04; the
//! signature line's blob is key ID || u64 big-endian timestamp || Ed25519 signature over
//! `cosignature/v1\ntime <timestamp>\n<checkpoint body>`.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::note::{NoteError, SignedNote, check_name, key_id, split_vkey};

/// Signature type byte of Ed25519 cosignatures (tlog-cosignature v1).
const COSIGNATURE_TYPE: u8 = 0x04;

/// A witness's cosigning key as verifiers hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    key_id: [u8; 4],
    public_key: ed25519_dalek::VerifyingKey,
}

/// The message a v1 cosignature signs.
pub fn message(timestamp: u64, checkpoint_body: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_body}")
}

impl CosignerKey {
    /// The cosigner key named `name` for the raw Ed25519 key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<CosignerKey, NoteError> {
        check_name(name)?;
        let public_key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        Ok(CosignerKey {
            name: name.to_string(),
            key_id: key_id(name, COSIGNATURE_TYPE, public_key.as_bytes()),
            public_key,
        })
    }

    /// Parses `<name>+<8 hex key ID>+<base64(0x04 || key)>`, checking the key ID.
    pub fn parse(vkey: &str) -> Result<CosignerKey, NoteError> {
        let (name, key_id, key_type, raw) = split_vkey(vkey)?;
        if key_type != COSIGNATURE_TYPE {
            return Err(NoteError::MalformedKey(
                "not an Ed25519 cosignature (type 0x04) key",
            ));
        }
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 key is 32 bytes"))?;
        let parsed = CosignerKey::new(name, &raw)?;
        if parsed.key_id != key_id {
            return Err(NoteError::MalformedKey(
                "the key ID does not match the name and key",
            ));
        }
        Ok(parsed)
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        let mut key = vec![COSIGNATURE_TYPE];
        key.extend_from_slice(self.public_key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            STANDARD.encode(key)
        )
    }

    /// The signature line of a cosignature made at `timestamp`.
    pub fn signature_line(&self, timestamp: u64, signature: &[u8; 64]) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(signature);
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }

    /// The timestamp of this key's valid cosignature on `note`; an error if it has none, or one
    /// that does not verify.
    pub fn verify(&self, note: &SignedNote) -> Result<u64, NoteError> {
        let mut found = None;
        for line in &note.signatures {
            if line.name != self.name || line.key_id != self.key_id {
                continue;
            }
            let (Some(timestamp), Some(signature)) = (
                line.signature
                    .get(..8)
                    .and_then(|t| <[u8; 8]>::try_from(t).ok()),
                line.signature
                    .get(8..)
                    .and_then(|s| ed25519_dalek::Signature::from_slice(s).ok()),
            ) else {
                return Err(NoteError::BadSignature(self.to_vkey()));
            };
            let timestamp = u64::from_be_bytes(timestamp);
            if timestamp > i64::MAX as u64 {
                return Err(NoteError::BadSignature(self.to_vkey()));
            }
            let message = message(timestamp, &note.text);
            if self
                .public_key
                .verify_strict(message.as_bytes(), &signature)
                .is_err()
            {
                return Err(NoteError::BadSignature(self.to_vkey()));
            }
            found = Some(found.map_or(timestamp, |t: u64| t.max(timestamp)));
        }
        found.ok_or_else(|| NoteError::NotSigned(self.to_vkey()))
    }
}

/// A witness's signing half: makes cosignatures under its [`CosignerKey`].
pub struct Cosigner {
    key: CosignerKey,
    signing: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("key", &self.key.to_vkey())
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// A cosigner named `name` with `signing` as its key.
    pub fn new(name: &str, signing: ed25519_dalek::SigningKey) -> Result<Cosigner, NoteError> {
        let key = CosignerKey::new(name, &signing.verifying_key().to_bytes())?;
        Ok(Cosigner { key, signing })
    }

    /// Its public half.
    pub fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// The cosignature line on a checkpoint whose note text is `checkpoint_body`.
    pub fn cosign(&self, checkpoint_body: &str, timestamp: u64) -> String {
        use ed25519_dalek::Signer;
        let signature = self
            .signing
            .sign(message(timestamp, checkpoint_body).as_bytes());
        self.key.signature_line(timestamp, &signature.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn a_cosignature_verifies_under_its_key_with_its_timestamp() {
        let cosigner = Cosigner::new(
            "witness.example/w1",
            ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        )
        .expect("cosigner");
        let vkey = cosigner.key().to_vkey();
        assert_eq!(CosignerKey::parse(&vkey), Ok(cosigner.key().clone()));
        let line = cosigner.cosign(BODY, 1_700_000_000);
        let note = SignedNote::parse(&format!("{BODY}\n{line}")).expect("note");
        assert_eq!(cosigner.key().verify(&note), Ok(1_700_000_000));

        // Another checkpoint under the same line, or a changed timestamp, does not verify.
        let other = SignedNote::parse(&format!("{}\n{line}", BODY.replace("\n5\n", "\n6\n")))
            .expect("note");
        assert!(cosigner.key().verify(&other).is_err());
        let mut blob = STANDARD
            .decode(line.trim_end().rsplit(' ').next().expect("blob"))
            .expect("base64");
        blob[11] ^= 1;
        let forged = format!(
            "{BODY}\n\u{2014} witness.example/w1 {}\n",
            STANDARD.encode(blob)
        );
        let forged = SignedNote::parse(&forged).expect("note");
        assert!(cosigner.key().verify(&forged).is_err());
    }

    #[test]
    fn a_log_vkey_is_not_a_cosigner_vkey() {
        let public = ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .to_bytes();
        let log = crate::note::VerifierKey::new("example.com/log", &public).expect("log key");
        assert!(CosignerKey::parse(&log.to_vkey()).is_err());
        let cosigner =
            Cosigner::new("w", ed25519_dalek::SigningKey::from_bytes(&[4; 32])).expect("cosigner");
        assert!(crate::note::VerifierKey::parse(&cosigner.key().to_vkey()).is_err());
    }
}
