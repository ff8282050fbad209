//! The `SigningBackend` trait: where private keys live. One file per backend under `backend/`;
//! nothing else in the daemon names a backend type.
#[cfg(feature = "aws")]
pub mod aws_kms;
#[cfg(feature = "gcp")]
pub mod gcp_kms;
mod guarded;
pub mod pkcs11;
#[cfg(feature = "vault")]
pub mod vault_transit;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::algorithm::Algorithm;
use crate::config::BackendConfig;

pub use guarded::Guarded;

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

    /// Finds the key named by `spec.backend_key`; when it is missing, asks the backend to create
    /// it (non-extractable, sign-only). Checks that the key fits `spec.algorithm`.
    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError>;

    /// Creates a new version of the key inside the backend, for rotation to signet version
    /// `version` (PKCS#11: a new key pair; Vault: `rotate`; AWS: a new key behind the alias;
    /// GCP: a new CryptoKeyVersion). `current` is the active version's reference.
    async fn create_version(
        &self,
        spec: &KeySpec,
        current: &str,
        version: u32,
    ) -> Result<BackendKey, BackendError>;

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

    /// Whether signet must check this backend's signatures before returning them: true for
    /// backends across a network, where an answer can be corrupted or come from the wrong key.
    fn answers_need_checking(&self) -> bool {
        true
    }
}

/// Builds the backend configured as `name`, behind the operator's call limits.
pub async fn build(
    name: &str,
    config: &BackendConfig,
) -> Result<Arc<dyn SigningBackend>, BackendError> {
    let inner: Arc<dyn SigningBackend> = match config {
        BackendConfig::Pkcs11(c) => Arc::new(pkcs11::Pkcs11Backend::connect(name, c).await?),
        #[cfg(feature = "vault")]
        BackendConfig::VaultTransit(c) => {
            Arc::new(vault_transit::VaultTransitBackend::connect(name, c).await?)
        }
        #[cfg(feature = "aws")]
        BackendConfig::AwsKms(c) => Arc::new(aws_kms::AwsKmsBackend::connect(name, c).await?),
        #[cfg(feature = "gcp")]
        BackendConfig::GcpKms(c) => Arc::new(gcp_kms::GcpKmsBackend::connect(name, c).await?),
        #[allow(unreachable_patterns)]
        other => {
            return Err(BackendError::Failed {
                backend: name.to_string(),
                reason: format!(
                    "backend type {} is not built into this binary (cargo feature off)",
                    other.kind()
                ),
            });
        }
    };
    let limits = config.call_limits();
    Ok(Arc::new(Guarded::new(
        inner,
        limits.timeout.get(),
        limits.max_retries,
    )))
}

/// The least time a backend gets to find or create a key. Backend clients' own timeouts are set
/// at least this long too; `Guarded` enforces the shorter deadline of every other call.
pub(crate) const KEY_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls one batch keeps in flight to a backend that signs one digest a call.
#[cfg(any(feature = "aws", feature = "gcp"))]
const CALLS_IN_FLIGHT_PER_BATCH: usize = 16;

/// Runs a batch's calls (one per digest) concurrently, a bounded number at a time so that one
/// large batch does not run into the service's request-rate quota; answers in input order.
#[cfg(any(feature = "aws", feature = "gcp"))]
pub(crate) async fn call_each<F: std::future::Future>(
    calls: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    use futures_util::StreamExt;
    futures_util::stream::iter(calls)
        .buffered(CALLS_IN_FLIGHT_PER_BATCH)
        .collect()
        .await
}
