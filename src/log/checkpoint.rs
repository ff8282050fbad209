//! Checkpoints in the C2SP `tlog-checkpoint` format, as C2SP `signed-note`s.
//!
//! Body: `<origin>\n<tree size>\n<base64 root hash>\n`. Signature line:
//! `— <origin> base64(key ID || signature)`. signet signs with an ECDSA P-256 key (`[log] key`,
//! ES256) as signed-note signature type 0x02, the one transparency-dev/witness uses:
//! the key ID is the first 4 bytes of SHA-256 over the key's DER SubjectPublicKeyInfo, and the
//! signature is ASN.1 DER ECDSA over SHA-256 of the note text (the body, final newline included).
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use crate::jwks::{JwkSet, spki_from_jwk};

/// The unsigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
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
    /// No signature by a key in the JWKS.
    #[error("no signature on the checkpoint is by a key in the JWKS")]
    UnknownKey,
    /// A signature by a known key does not verify.
    #[error("the checkpoint signature does not verify")]
    BadSignature,
}

impl Checkpoint {
    /// The note text that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
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
        if size.is_empty()
            || (size.len() > 1 && size.starts_with('0'))
            || !size.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CheckpointError::Malformed(
                "tree size is not a decimal number",
            ));
        }
        let size = size
            .parse()
            .map_err(|_| CheckpointError::Malformed("tree size out of range"))?;
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
        if lines.any(str::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// The signed-note key ID of an ECDSA key: SHA-256 of its DER SPKI, first four bytes.
pub fn ecdsa_key_id(spki: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(spki);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The signed note: body, blank line, one signature line.
pub fn sign_note(body: &str, key_name: &str, key_id: [u8; 4], signature_der: &[u8]) -> String {
    let mut blob = key_id.to_vec();
    blob.extend_from_slice(signature_der);
    format!("{body}\n\u{2014} {key_name} {}\n", STANDARD.encode(blob))
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, final newline included.
    pub text: String,
    /// `(key name, key ID, signature)` per signature line.
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

/// Splits a signed note into its text and signature lines.
pub fn parse_note(note: &str) -> Result<SignedNote, CheckpointError> {
    if note.len() > 64 * 1024 || note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CheckpointError::Malformed("not a signed note"));
    }
    let split = note.rfind("\n\n").ok_or(CheckpointError::Malformed(
        "no blank line before signatures",
    ))?;
    let text = &note[..split + 1];
    let mut signatures = Vec::new();
    for line in note[split + 2..].split_terminator('\n') {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(CheckpointError::Malformed("signature line"))?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or(CheckpointError::Malformed("signature line"))?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| CheckpointError::Malformed("signature base64"))?;
        if blob.len() < 5 {
            return Err(CheckpointError::Malformed("signature too short"));
        }
        let key_id = [blob[0], blob[1], blob[2], blob[3]];
        signatures.push((name.to_string(), key_id, blob[4..].to_vec()));
    }
    if signatures.is_empty() {
        return Err(CheckpointError::Malformed("no signatures"));
    }
    Ok(SignedNote {
        text: text.to_string(),
        signatures,
    })
}

/// Verifies a signed checkpoint against the ES256 keys of a JWKS; returns the checkpoint.
/// Signatures by unknown keys are ignored; one by a known key must verify, and at least one must.
pub fn verify_checkpoint(
    note: &str,
    expected_origin: Option<&str>,
    jwks: &JwkSet,
) -> Result<Checkpoint, CheckpointError> {
    let parsed = parse_note(note)?;
    let checkpoint = Checkpoint::parse_body(&parsed.text)?;
    if let Some(expected) = expected_origin
        && checkpoint.origin != expected
    {
        return Err(CheckpointError::WrongOrigin {
            expected: expected.to_string(),
            found: checkpoint.origin,
        });
    }
    let keys: Vec<([u8; 4], p256::ecdsa::VerifyingKey)> = jwks
        .keys
        .iter()
        .filter(|jwk| jwk.alg == "ES256")
        .filter_map(|jwk| spki_from_jwk(jwk).ok())
        .filter_map(|(_, spki)| {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).ok()?;
            Some((ecdsa_key_id(&spki), key))
        })
        .collect();
    let mut verified = false;
    for (name, key_id, signature) in &parsed.signatures {
        if *name != checkpoint.origin {
            continue;
        }
        for (id, key) in &keys {
            if id != key_id {
                continue;
            }
            let signature = p256::ecdsa::Signature::from_der(signature)
                .map_err(|_| CheckpointError::BadSignature)?;
            key.verify(parsed.text.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature)?;
            verified = true;
        }
    }
    if verified {
        Ok(checkpoint)
    } else {
        Err(CheckpointError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Algorithm;
    use crate::jwks::jwk_from_spki;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn signs_and_verifies_a_checkpoint() {
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let spki = key.verifying_key().to_public_key_der().expect("spki");
        let checkpoint = Checkpoint {
            origin: "signet.test/log".into(),
            size: 42,
            root: [7; 32],
        };
        let body = checkpoint.body();
        let signature: p256::ecdsa::Signature = key.sign(body.as_bytes());
        let note = sign_note(
            &body,
            &checkpoint.origin,
            ecdsa_key_id(spki.as_bytes()),
            signature.to_der().as_bytes(),
        );
        let jwks = JwkSet {
            keys: vec![jwk_from_spki(spki.as_bytes(), Algorithm::ES256).expect("jwk")],
        };
        assert_eq!(
            verify_checkpoint(&note, Some("signet.test/log"), &jwks),
            Ok(checkpoint)
        );
        assert!(matches!(
            verify_checkpoint(&note, Some("other/log"), &jwks),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        let tampered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            verify_checkpoint(&tampered, None, &jwks),
            Err(CheckpointError::BadSignature)
        );
        let empty = JwkSet { keys: vec![] };
        assert_eq!(
            verify_checkpoint(&note, None, &empty),
            Err(CheckpointError::UnknownKey)
        );
    }

    #[test]
    fn parses_the_c2sp_example_body() {
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let checkpoint = Checkpoint::parse_body(body).expect("parses");
        assert_eq!(checkpoint.size, 20852163);
        assert_eq!(checkpoint.body(), body);
        assert!(Checkpoint::parse_body("o\n012\nAA==\n").is_err());
    }
}
