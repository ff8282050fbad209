//! The `SigningBackend` trait: where private keys live. One file per backend under `backend/`;
//! nothing else in the daemon names a backend type.
#[cfg(feature = "aws")]
pub mod aws_kms;
#[cfg(feature = "gcp")]
pub mod gcp_kms;
pub mod pkcs11;
#[cfg(feature = "vault")]
pub mod vault_transit;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::algorithm::Algorithm;
use crate::config::BackendConfig;
use crate::signature::PublicKey;

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

/// First pause before a retry; doubled each time, never past the call's deadline.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Calls one batch keeps in flight to a backend that signs one digest a call.
#[cfg(any(feature = "aws", feature = "gcp"))]
const CALLS_IN_FLIGHT_PER_BATCH: usize = 16;

/// Runs a batch's calls (one per digest) concurrently, a bounded number at a time so that one
/// large batch does not run into the service's request-rate quota; answers in input order.
#[cfg(any(feature = "aws", feature = "gcp"))]
pub(crate) async fn call_each<F: Future>(calls: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use futures_util::StreamExt;
    futures_util::stream::iter(calls)
        .buffered(CALLS_IN_FLIGHT_PER_BATCH)
        .collect()
        .await
}
/// Largest batch whose signatures are checked on the async worker; bigger ones (up to a
/// second of CPU for 1,000 ES384 signatures) go to a blocking thread.
const CHECK_INLINE_MAX: usize = 16;

/// Any backend behind the limits the operator set: one deadline per call (`timeout`, retries
/// included), bounded retries with back-off of what is safe to retry, and, for backends across a
/// network, every signature checked against its version's public key before it leaves, so a
/// corrupted answer never becomes a signature.
#[derive(Debug)]
pub struct Guarded {
    inner: Arc<dyn SigningBackend>,
    timeout: Duration,
    max_retries: u32,
    public_keys: RwLock<HashMap<String, Arc<PublicKey>>>,
}

impl Guarded {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SigningBackend>, timeout: Duration, max_retries: u32) -> Self {
        Guarded {
            inner,
            timeout,
            max_retries,
            public_keys: RwLock::new(HashMap::new()),
        }
    }

    fn timed_out(&self) -> BackendError {
        BackendError::Timeout {
            backend: self.inner.name().to_string(),
            after: self.timeout,
        }
    }

    /// Runs `call` until it succeeds, fails for good, runs out of retries or of time.
    async fn retrying<T, F, Fut>(&self, retry_timeouts: bool, call: F) -> Result<T, BackendError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        self.retrying_within(self.timeout, retry_timeouts, call)
            .await
    }

    async fn retrying_within<T, F, Fut>(
        &self,
        limit: Duration,
        retry_timeouts: bool,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let deadline = Instant::now() + limit;
        let mut pause = FIRST_RETRY_PAUSE;
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, call()).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(BackendError::Timeout {
                        backend: self.inner.name().to_string(),
                        after: limit,
                    });
                }
            };
            let retry = match &outcome {
                Ok(_) => false,
                Err(BackendError::Unavailable { .. } | BackendError::Malformed { .. }) => true,
                Err(BackendError::Timeout { .. }) => retry_timeouts,
                Err(_) => false,
            };
            if !retry || attempt >= self.max_retries {
                return outcome;
            }
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= pause {
                return outcome;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }

    async fn verifier(
        &self,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Arc<PublicKey>, BackendError> {
        if let Some(key) = self
            .public_keys
            .read()
            .ok()
            .and_then(|m| m.get(reference).cloned())
        {
            return Ok(key);
        }
        let spki = self
            .retrying(true, || self.inner.public_key(reference, algorithm))
            .await?;
        let key = Arc::new(PublicKey::from_spki(algorithm, &spki).map_err(|e| {
            BackendError::Malformed {
                backend: self.inner.name().to_string(),
                reason: format!("public key: {e}"),
            }
        })?);
        if let Ok(mut keys) = self.public_keys.write() {
            keys.insert(reference.to_string(), key.clone());
        }
        Ok(key)
    }
}

#[async_trait]
impl SigningBackend for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn answers_need_checking(&self) -> bool {
        self.inner.answers_need_checking()
    }

    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError> {
        // A creation that timed out may have happened: only a refused connection is retried.
        // Creating a key (RSA generation in particular) is an administrative step that may take
        // longer than a signature: it gets at least KEY_CREATION_TIMEOUT.
        self.retrying_within(self.timeout.max(KEY_CREATION_TIMEOUT), false, || {
            self.inner.find_or_create(spec)
        })
        .await
    }

    async fn create_version(
        &self,
        spec: &KeySpec,
        current: &str,
        version: u32,
    ) -> Result<BackendKey, BackendError> {
        self.retrying_within(self.timeout.max(KEY_CREATION_TIMEOUT), false, || {
            self.inner.create_version(spec, current, version)
        })
        .await
    }

    async fn public_key(
        &self,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, BackendError> {
        self.retrying(true, || self.inner.public_key(reference, algorithm))
            .await
    }

    async fn sign(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let checker = if self.inner.answers_need_checking() {
            Some(self.verifier(reference, algorithm).await?)
        } else {
            None
        };
        self.retrying(true, || async {
            let signatures = self
                .inner
                .sign(reference, algorithm, digests.clone())
                .await?;
            if signatures.len() != digests.len() {
                return Err(BackendError::Malformed {
                    backend: self.inner.name().to_string(),
                    reason: format!(
                        "{} signatures for {} digests",
                        signatures.len(),
                        digests.len()
                    ),
                });
            }
            if let Some(key) = &checker {
                let all_verify = if digests.len() <= CHECK_INLINE_MAX {
                    all_verify(key, &digests, &signatures)
                } else {
                    let (key, digests, signed) =
                        (Arc::clone(key), digests.clone(), signatures.clone());
                    tokio::task::spawn_blocking(move || all_verify(&key, &digests, &signed))
                        .await
                        .map_err(|e| BackendError::Unavailable {
                            backend: self.inner.name().to_string(),
                            reason: format!("the signature check stopped: {e}"),
                        })?
                };
                if !all_verify {
                    return Err(BackendError::Malformed {
                        backend: self.inner.name().to_string(),
                        reason: "a signature does not verify under the key's public key".into(),
                    });
                }
            }
            Ok(signatures)
        })
        .await
    }

    async fn health(&self) -> Result<(), BackendError> {
        match tokio::time::timeout(self.timeout, self.inner.health()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.timed_out()),
        }
    }
}

/// The DER inside a PEM `PUBLIC KEY` block (as Vault and GCP KMS return public keys).
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")?
        .strip_suffix("-----END PUBLIC KEY-----")?;
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
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
        Algorithm::PS256 | Algorithm::RS256 | Algorithm::EdDSA => {
            Err("not an ECDSA algorithm".to_string())
        }
    }
}

/// Whether every signature verifies over its digest.
fn all_verify(key: &PublicKey, digests: &[Vec<u8>], signatures: &[Vec<u8>]) -> bool {
    digests
        .iter()
        .zip(signatures)
        .all(|(digest, signature)| key.verifies(digest, signature))
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
