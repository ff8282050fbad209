//! The `SigningBackend` trait: where private keys live. One file per backend under `backend/`;
//! nothing else in the daemon names a backend type.
pub mod pkcs11;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::algorithm::Algorithm;
use crate::config::BackendConfig;

/// What signet asks a backend to find or create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The logical key's name (for messages).
    pub key_name: String,
    /// The backend's own name for the key (PKCS#11 `CKA_LABEL`, ...).
    pub backend_key: String,
    /// The algorithm the key must support.
    pub algorithm: Algorithm,
    /// RSA modulus size, when the backend creates an RSA key.
    pub rsa_bits: u32,
}

/// A key version as a backend knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKey {
    /// The backend's reference to the version, stored and handed back on every call. Opaque to
    /// everything but the backend that made it.
    pub reference: String,
    /// The public key as DER SubjectPublicKeyInfo.
    pub public_key_spki: Vec<u8>,
    /// Whether signet asked the backend to create it just now.
    pub created: bool,
}

/// Why a backend call failed. Messages name the backend and key, never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be reached or is refusing service; worth retrying later.
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable {
        /// Backend name from the config.
        backend: String,
        /// What went wrong.
        reason: String,
    },
    /// A call took longer than the configured timeout.
    #[error("backend {backend} did not answer within {after:?}")]
    Timeout {
        /// Backend name from the config.
        backend: String,
        /// The timeout.
        after: Duration,
    },
    /// The key exists but cannot serve the configured algorithm.
    #[error("backend {backend}: key {key} does not fit {algorithm}: {reason}")]
    KeyMismatch {
        /// Backend name from the config.
        backend: String,
        /// The backend's key name.
        key: String,
        /// The configured algorithm.
        algorithm: Algorithm,
        /// What does not fit.
        reason: String,
    },
    /// The key is missing and could not be created, or is ambiguous.
    #[error("backend {backend}: key {key}: {reason}")]
    KeyUnusable {
        /// Backend name from the config.
        backend: String,
        /// The backend's key name.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend answered with something that is not a valid signature or key.
    #[error("backend {backend} returned a malformed answer: {reason}")]
    Malformed {
        /// Backend name from the config.
        backend: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Any other failure reported by the backend.
    #[error("backend {backend} failed: {reason}")]
    Failed {
        /// Backend name from the config.
        backend: String,
        /// The backend's message.
        reason: String,
    },
}

impl BackendError {
    /// Whether the failure is the backend's availability (503) rather than a fault (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable { .. } | BackendError::Timeout { .. }
        )
    }
}

/// A place that holds private keys and signs digests with them.
#[async_trait]
pub trait SigningBackend: Send + Sync + std::fmt::Debug {
    /// The backend's name from the config.
    fn name(&self) -> &str;

    /// The backend's `type` (`pkcs11`, ...).
    fn kind(&self) -> &'static str;

    /// Finds the key named by `spec.backend_key`; when it is missing, asks the backend to create
    /// it (non-extractable, sign-only). Checks that the key fits `spec.algorithm`.
    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError>;

    /// The public key (SPKI DER) of an existing version; an error if the backend no longer has it.
    async fn public_key(
        &self,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, BackendError>;

    /// Signs each digest, which the caller has already computed and checked to be
    /// `algorithm.digest_algorithm()`'s length. ECDSA signatures come back as ASN.1 DER, RSA
    /// signatures as the raw big-endian integer; the order is that of `digests`.
    async fn sign(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError>;

    /// Checks that the backend answers (for `/readyz`).
    async fn health(&self) -> Result<(), BackendError>;
}

/// Builds the backend configured as `name`.
pub async fn build(
    name: &str,
    config: &BackendConfig,
) -> Result<Arc<dyn SigningBackend>, BackendError> {
    match config {
        BackendConfig::Pkcs11(c) => Ok(Arc::new(pkcs11::Pkcs11Backend::connect(name, c).await?)),
        other => Err(BackendError::Failed {
            backend: name.to_string(),
            reason: format!(
                "backend type {} is not built into this version",
                other.kind()
            ),
        }),
    }
}

/// Converts a fixed-size ECDSA `r || s` signature (as PKCS#11 returns it) into ASN.1 DER.
pub fn ecdsa_raw_to_der(algorithm: Algorithm, raw: &[u8]) -> Result<Vec<u8>, String> {
    match algorithm {
        Algorithm::ES256 => p256::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| format!("ECDSA P-256 signature of {} bytes, expected 64", raw.len())),
        Algorithm::ES384 => p384::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| format!("ECDSA P-384 signature of {} bytes, expected 96", raw.len())),
        Algorithm::PS256 | Algorithm::RS256 => Err("not an ECDSA algorithm".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_converts_to_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1;
        raw[63] = 2;
        let der = ecdsa_raw_to_der(Algorithm::ES256, &raw).expect("valid r, s");
        assert_eq!(der, vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]);
        assert!(ecdsa_raw_to_der(Algorithm::ES256, &raw[..63]).is_err());
    }
}
