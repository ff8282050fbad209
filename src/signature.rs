//! Checking a detached signature over a digest against a published JWK, as a verifier does.
//! ECDSA signatures are ASN.1 DER; RSA ones are the raw big-endian integer (API.md).
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest as _, Sha256, Sha384};

use crate::algorithm::{Algorithm, DigestAlgorithm};
use crate::jwks::{Jwk, JwkError, ed25519_raw, spki_from_jwk};

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The JWK is unusable.
    #[error(transparent)]
    Key(#[from] JwkError),
    /// The digest's length is not the algorithm's.
    #[error("the digest is {found} bytes; {algorithm} signs {expected}-byte digests")]
    DigestLength {
        /// The key's algorithm.
        algorithm: Algorithm,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The signature is not a valid signature of the digest under the key.
    #[error("the signature does not verify under key {kid}")]
    Invalid {
        /// The key's kid.
        kid: String,
    },
}

/// What `algorithm` signs for `bytes`: their digest, or for EdDSA the bytes themselves
/// (Ed25519 hashes internally and is never prehashed here).
pub fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> Vec<u8> {
    match algorithm.digest_algorithm() {
        Some(DigestAlgorithm::Sha256) => Sha256::digest(bytes).to_vec(),
        Some(DigestAlgorithm::Sha384) => Sha384::digest(bytes).to_vec(),
        None => bytes.to_vec(),
    }
}

/// A public key parsed once, to check many signatures with it.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// ES256.
    P256(p256::ecdsa::VerifyingKey),
    /// ES384.
    P384(p384::ecdsa::VerifyingKey),
    /// PS256 or RS256.
    Rsa(Box<rsa::RsaPublicKey>, Algorithm),
    /// EdDSA (Ed25519), over whole messages.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo for `algorithm`.
    pub fn from_spki(algorithm: Algorithm, spki: &[u8]) -> Result<PublicKey, SignatureError> {
        let bad_key = |_| SignatureError::Key(JwkError::InvalidKey(algorithm));
        Ok(match algorithm {
            Algorithm::ES256 => PublicKey::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(bad_key)?,
            ),
            Algorithm::ES384 => PublicKey::P384(
                p384::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(bad_key)?,
            ),
            Algorithm::PS256 | Algorithm::RS256 => PublicKey::Rsa(
                Box::new(rsa::RsaPublicKey::from_public_key_der(spki).map_err(bad_key)?),
                algorithm,
            ),
            Algorithm::EdDSA => PublicKey::Ed25519(
                ed25519_raw(spki)
                    .and_then(|raw| ed25519_dalek::VerifyingKey::from_bytes(&raw).ok())
                    .ok_or(SignatureError::Key(JwkError::InvalidKey(algorithm)))?,
            ),
        })
    }

    /// Whether `signature` is valid over the prehashed `digest` (for Ed25519: over the message
    /// itself, checked strictly: no small-order keys, canonical encodings only).
    pub fn verifies(&self, digest: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| key.verify_prehash(digest, &s).is_ok()),
            PublicKey::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| key.verify_prehash(digest, &s).is_ok()),
            PublicKey::Rsa(key, Algorithm::PS256) => key
                .verify(rsa::Pss::new::<Sha256>(), digest, signature)
                .is_ok(),
            PublicKey::Rsa(key, _) => key
                .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), digest, signature)
                .is_ok(),
            PublicKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(digest, &s).is_ok()),
        }
    }
}

/// Verifies `signature` over the prehashed `digest` under `jwk` (whose kid is checked to be its
/// thumbprint first).
pub fn verify_digest(jwk: &Jwk, digest: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let (algorithm, spki) = spki_from_jwk(jwk)?;
    let expected = algorithm
        .digest_algorithm()
        .map_or(digest.len(), |d| d.output_len());
    if digest.len() != expected {
        return Err(SignatureError::DigestLength {
            algorithm,
            expected,
            found: digest.len(),
        });
    }
    if PublicKey::from_spki(algorithm, &spki)?.verifies(digest, signature) {
        Ok(())
    } else {
        Err(SignatureError::Invalid {
            kid: jwk.kid.clone(),
        })
    }
}

/// Verifies `signature` over `message` (hashed with the key's digest) under `jwk`.
pub fn verify_message(jwk: &Jwk, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let algorithm: Algorithm = jwk
        .alg
        .parse()
        .map_err(|_| JwkError::Malformed("unknown alg"))?;
    verify_digest(jwk, &digest_of(algorithm, message), signature)
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;

    use super::*;
    use crate::jwks::jwk_from_spki;

    #[test]
    fn ecdsa_signature_verifies_and_a_flipped_bit_does_not() {
        let key = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .expect("spki")
            .into_vec();
        let jwk = jwk_from_spki(&spki, Algorithm::ES256).expect("jwk");
        let digest = Sha256::digest(b"manifest");
        let signature: p256::ecdsa::Signature = key.sign_prehash(&digest).expect("sign");
        let der = signature.to_der().as_bytes().to_vec();
        verify_message(&jwk, b"manifest", &der).expect("verifies");
        let mut flipped = der.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            verify_message(&jwk, b"manifest", &flipped),
            Err(SignatureError::Invalid { .. })
        ));
        assert!(verify_message(&jwk, b"other", &der).is_err());
        assert!(matches!(
            verify_digest(&jwk, &[0; 20], &der),
            Err(SignatureError::DigestLength { .. })
        ));
    }
}
