//! C2SP tlog-cosignature v1 with Ed25519 (pure): a witness's statement that, at a time, the
//! checkpoint is the largest consistent tree it has seen of that log. The witness key's ID is
//! the first four bytes of SHA-256(name || 0x0A || 0x04 || key) and its vkey has type 0x04; the
//! signature line's blob is key ID || u64 big-endian timestamp || Ed25519 signature over
//! `cosignature/v1\ntime <timestamp>\n<checkpoint body>`.
use crate::note::{Ed25519Key, NoteError, SignedNote};

/// Signature type byte of Ed25519 cosignatures (tlog-cosignature v1).
const COSIGNATURE_TYPE: u8 = 0x04;

/// A witness's cosigning key as verifiers hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey(Ed25519Key);

/// The message a v1 cosignature signs.
pub fn message(timestamp: u64, checkpoint_body: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_body}")
}

impl CosignerKey {
    /// The cosigner key named `name` for the raw Ed25519 key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<CosignerKey, NoteError> {
        Ed25519Key::new(name, COSIGNATURE_TYPE, public_key).map(CosignerKey)
    }

    /// Parses `<name>+<8 hex key ID>+<base64(0x04 || key)>`, checking the key ID.
    pub fn parse(vkey: &str) -> Result<CosignerKey, NoteError> {
        Ed25519Key::parse(
            vkey,
            COSIGNATURE_TYPE,
            "not an Ed25519 cosignature (type 0x04) key",
        )
        .map(CosignerKey)
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// The signature line of a cosignature made at `timestamp`.
    pub fn signature_line(&self, timestamp: u64, signature: &[u8; 64]) -> String {
        let mut blob = timestamp.to_be_bytes().to_vec();
        blob.extend_from_slice(signature);
        self.0.signature_line(&blob)
    }

    /// The timestamp of this key's valid cosignature on `note`; an error if it has none, or one
    /// that does not verify.
    pub fn verify(&self, note: &SignedNote) -> Result<u64, NoteError> {
        let mut found = None;
        for line in self.0.lines(note) {
            let bad = || NoteError::BadSignature(self.to_vkey());
            let (timestamp, signature) = line.signature.split_at_checked(8).ok_or_else(bad)?;
            let timestamp = u64::from_be_bytes(timestamp.try_into().map_err(|_| bad())?);
            if timestamp > i64::MAX as u64
                || !self
                    .0
                    .verifies(message(timestamp, &note.text).as_bytes(), signature)
            {
                return Err(bad());
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
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

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
