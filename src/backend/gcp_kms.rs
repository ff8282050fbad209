//! Google Cloud KMS backend (Google's `google-cloud-kms-v1`, REST). A signet key is a CryptoKey
//! under the configured key ring; a signet key version is one CryptoKeyVersion, named in full.
//! Credentials: a service-account file, or Application Default Credentials. The client library
//! does not check CRC32C: signet sends the digest's, and checks `verifiedDigestCrc32c`,
//! `signatureCrc32c` and `pemCrc32c` itself; a mismatch is a backend fault, never a signature.
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_auth::credentials::service_account;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::{
    CryptoKeyVersionAlgorithm, CryptoKeyVersionState,
};
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersionTemplate, Digest};

use super::{BackendError, BackendKey, KEY_CREATION_TIMEOUT, KeySpec, SigningBackend};
use crate::algorithm::Algorithm;
use crate::config::backend::GcpKmsConfig;

/// A key ring in Cloud KMS used as a signing backend.
pub struct GcpKmsBackend {
    name: String,
    key_ring: String,
    client: KeyManagementService,
    timeout: Duration,
    /// A version this backend serves, for the health check.
    known_version: Mutex<Option<String>>,
}

impl std::fmt::Debug for GcpKmsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpKmsBackend")
            .field("name", &self.name)
            .field("key_ring", &self.key_ring)
            .finish_non_exhaustive()
    }
}

impl GcpKmsBackend {
    /// Builds the client: the endpoint override, the credentials, and no retries of the
    /// library's own (signet's retry and timeout apply to every call).
    pub async fn connect(name: &str, config: &GcpKmsConfig) -> Result<Self, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: name.to_string(),
            reason,
        };
        let mut builder = KeyManagementService::builder()
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(config.timeout.get().max(KEY_CREATION_TIMEOUT));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(path) = &config.credentials_file {
            let text = std::fs::read(path).map_err(|e| {
                unavailable(format!(
                    "cannot read credentials file {}: {e}",
                    path.display()
                ))
            })?;
            let json: serde_json::Value = serde_json::from_slice(&text).map_err(|_| {
                unavailable(format!("credentials file {} is not JSON", path.display()))
            })?;
            let credentials = service_account::Builder::new(json)
                .build()
                .map_err(|e| unavailable(format!("credentials file {}: {e}", path.display())))?;
            builder = builder.with_credentials(credentials);
        }
        let client = builder
            .build()
            .await
            .map_err(|e| unavailable(format!("client: {e}")))?;
        Ok(GcpKmsBackend {
            name: name.to_string(),
            key_ring: config.key_ring.trim_end_matches('/').to_string(),
            client,
            timeout: config.timeout.get(),
            known_version: Mutex::new(None),
        })
    }

    fn error(&self, key: &str, error: google_cloud_kms_v1::Error) -> BackendError {
        let code = error.status().map(|s| s.code);
        let unusable = |reason: String| BackendError::KeyUnusable {
            backend: self.name.clone(),
            key: key.to_string(),
            reason,
        };
        if is_not_found(&error) {
            return unusable("not found".into());
        }
        match code {
            Some(Code::FailedPrecondition) => unusable(format!(
                "not usable (disabled or destroyed?): {}",
                error.status().map(|s| s.message.as_str()).unwrap_or("")
            )),
            Some(code) => BackendError::Unavailable {
                backend: self.name.clone(),
                reason: format!(
                    "{}: {}",
                    code.name(),
                    error.status().map(|s| s.message.as_str()).unwrap_or("")
                ),
            },
            None if error.is_timeout() => BackendError::Unavailable {
                backend: self.name.clone(),
                reason: "Cloud KMS did not answer in time".into(),
            },
            None if error.is_deserialization() => BackendError::Malformed {
                backend: self.name.clone(),
                reason: "an answer that is not a Cloud KMS message".into(),
            },
            None => BackendError::Unavailable {
                backend: self.name.clone(),
                reason: match error.http_status_code() {
                    Some(status) => format!("HTTP {status}"),
                    None => "cannot reach Cloud KMS".into(),
                },
            },
        }
    }

    fn malformed(&self, reason: String) -> BackendError {
        BackendError::Malformed {
            backend: self.name.clone(),
            reason,
        }
    }

    fn remember(&self, version: &str) {
        if let Ok(mut known) = self.known_version.lock() {
            known.get_or_insert_with(|| version.to_string());
        }
    }

    /// The newest enabled version of a key, waiting out `PENDING_GENERATION` for a new one.
    async fn newest_enabled_version(&self, key: &str) -> Result<Option<String>, BackendError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let mut items = self
                .client
                .list_crypto_key_versions()
                .set_parent(key)
                .by_item();
            let mut newest: Option<(u64, String)> = None;
            let mut pending = false;
            while let Some(version) = items.next().await {
                let version = version.map_err(|e| self.error(key, e))?;
                match version.state {
                    CryptoKeyVersionState::Enabled => {
                        let number = version
                            .name
                            .rsplit('/')
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0);
                        if newest.as_ref().is_none_or(|(n, _)| number > *n) {
                            newest = Some((number, version.name));
                        }
                    }
                    CryptoKeyVersionState::PendingGeneration => pending = true,
                    _ => {}
                }
            }
            if newest.is_some() || !pending || tokio::time::Instant::now() >= deadline {
                return Ok(newest.map(|(_, name)| name));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn algorithm_for(spec: &KeySpec) -> CryptoKeyVersionAlgorithm {
    match (spec.algorithm, spec.rsa_bits) {
        (Algorithm::ES256, _) => CryptoKeyVersionAlgorithm::EcSignP256Sha256,
        (Algorithm::ES384, _) => CryptoKeyVersionAlgorithm::EcSignP384Sha384,
        (Algorithm::EdDSA, _) => CryptoKeyVersionAlgorithm::EcSignEd25519,
        (Algorithm::PS256, 4096) => CryptoKeyVersionAlgorithm::RsaSignPss4096Sha256,
        (Algorithm::PS256, 3072) => CryptoKeyVersionAlgorithm::RsaSignPss3072Sha256,
        (Algorithm::PS256, _) => CryptoKeyVersionAlgorithm::RsaSignPss2048Sha256,
        (Algorithm::RS256, 4096) => CryptoKeyVersionAlgorithm::RsaSignPkcs14096Sha256,
        (Algorithm::RS256, 3072) => CryptoKeyVersionAlgorithm::RsaSignPkcs13072Sha256,
        (Algorithm::RS256, _) => CryptoKeyVersionAlgorithm::RsaSignPkcs12048Sha256,
    }
}

/// Whether a Cloud KMS version algorithm signs exactly what the JOSE algorithm means.
fn algorithm_fits(found: &CryptoKeyVersionAlgorithm, algorithm: Algorithm) -> bool {
    use CryptoKeyVersionAlgorithm as A;
    match algorithm {
        Algorithm::ES256 => *found == A::EcSignP256Sha256,
        Algorithm::ES384 => *found == A::EcSignP384Sha384,
        Algorithm::EdDSA => *found == A::EcSignEd25519,
        Algorithm::PS256 => [
            A::RsaSignPss2048Sha256,
            A::RsaSignPss3072Sha256,
            A::RsaSignPss4096Sha256,
        ]
        .contains(found),
        Algorithm::RS256 => [
            A::RsaSignPkcs12048Sha256,
            A::RsaSignPkcs13072Sha256,
            A::RsaSignPkcs14096Sha256,
        ]
        .contains(found),
    }
}

fn is_not_found(error: &google_cloud_kms_v1::Error) -> bool {
    match error.status() {
        Some(status) => status.code == Code::NotFound,
        None => error.http_status_code() == Some(404),
    }
}

fn crc32c(data: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(data))
}

#[async_trait]
impl SigningBackend for GcpKmsBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError> {
        let key = format!("{}/cryptoKeys/{}", self.key_ring, spec.backend_key);
        let created = match self.client.get_crypto_key().set_name(&key).send().await {
            Ok(found) => {
                if found.purpose != CryptoKeyPurpose::AsymmetricSign {
                    return Err(BackendError::KeyMismatch {
                        backend: self.name.clone(),
                        key: key.clone(),
                        algorithm: spec.algorithm,
                        reason: "its purpose is not ASYMMETRIC_SIGN".into(),
                    });
                }
                false
            }
            Err(e) if is_not_found(&e) => {
                // Created inside Cloud KMS; version 1 is generated there.
                self.client
                    .create_crypto_key()
                    .set_parent(&self.key_ring)
                    .set_crypto_key_id(&spec.backend_key)
                    .set_crypto_key(
                        CryptoKey::new()
                            .set_purpose(CryptoKeyPurpose::AsymmetricSign)
                            .set_version_template(
                                CryptoKeyVersionTemplate::new().set_algorithm(algorithm_for(spec)),
                            ),
                    )
                    .send()
                    .await
                    .map_err(|e| self.error(&key, e))?;
                true
            }
            Err(e) => return Err(self.error(&key, e)),
        };
        let version =
            self.newest_enabled_version(&key)
                .await?
                .ok_or_else(|| BackendError::KeyUnusable {
                    backend: self.name.clone(),
                    key: key.clone(),
                    reason: "it has no enabled version".into(),
                })?;
        let spki = self.public_key(&version, spec.algorithm).await?;
        Ok(BackendKey {
            reference: version,
            public_key_spki: spki,
            created,
        })
    }

    /// A new CryptoKeyVersion of the same CryptoKey, once Cloud KMS has generated it.
    async fn create_version(
        &self,
        spec: &KeySpec,
        _current: &str,
        _version: u32,
    ) -> Result<BackendKey, BackendError> {
        let key = format!("{}/cryptoKeys/{}", self.key_ring, spec.backend_key);
        let created = self
            .client
            .create_crypto_key_version()
            .set_parent(&key)
            .send()
            .await
            .map_err(|e| self.error(&key, e))?;
        let deadline = tokio::time::Instant::now() + KEY_CREATION_TIMEOUT;
        let mut state = created.state;
        while state == CryptoKeyVersionState::PendingGeneration {
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::KeyUnusable {
                    backend: self.name.clone(),
                    key: created.name.clone(),
                    reason: "still being generated".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            state = self
                .client
                .get_crypto_key_version()
                .set_name(&created.name)
                .send()
                .await
                .map_err(|e| self.error(&created.name, e))?
                .state;
        }
        let spki = self.public_key(&created.name, spec.algorithm).await?;
        Ok(BackendKey {
            reference: created.name,
            public_key_spki: spki,
            created: true,
        })
    }

    async fn public_key(
        &self,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, BackendError> {
        let answer = self
            .client
            .get_public_key()
            .set_name(reference)
            .send()
            .await
            .map_err(|e| self.error(reference, e))?;
        if answer.pem_crc32c != Some(crc32c(answer.pem.as_bytes())) {
            return Err(self.malformed(format!("public key of {reference}: pemCrc32c mismatch")));
        }
        if answer.name != reference {
            return Err(self.malformed(format!(
                "asked for the public key of {reference}, got {}",
                answer.name
            )));
        }
        if !algorithm_fits(&answer.algorithm, algorithm) {
            return Err(BackendError::KeyMismatch {
                backend: self.name.clone(),
                key: reference.to_string(),
                algorithm,
                reason: format!("it is {}", answer.algorithm),
            });
        }
        self.remember(reference);
        crate::jwks::pem_to_spki(&answer.pem)
            .ok_or_else(|| self.malformed(format!("public key of {reference} is not PEM")))
    }

    async fn sign(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        // One digest a call. The calls are built up front (owning their digests) so the stream borrows nothing
        // from the iteration.
        let calls: Vec<_> = digests
            .iter()
            .map(|digest| {
                let call = self.client.asymmetric_sign().set_name(reference);
                match algorithm {
                    // Ed25519 signs the message itself: Cloud KMS takes it as `data`.
                    Algorithm::EdDSA => call
                        .set_data(digest.clone())
                        .set_data_crc32c(crc32c(digest)),
                    Algorithm::ES384 => call
                        .set_digest(Digest::new().set_sha384(digest.clone()))
                        .set_digest_crc32c(crc32c(digest)),
                    _ => call
                        .set_digest(Digest::new().set_sha256(digest.clone()))
                        .set_digest_crc32c(crc32c(digest)),
                }
            })
            .collect();
        let calls = calls.into_iter().map(|call| call.send());
        let mut signatures = Vec::with_capacity(digests.len());
        for answer in super::call_each(calls).await {
            let answer = answer.map_err(|e| self.error(reference, e))?;
            let input_verified = if algorithm == Algorithm::EdDSA {
                answer.verified_data_crc32c
            } else {
                answer.verified_digest_crc32c
            };
            if !input_verified {
                return Err(self.malformed(
                    "the input's CRC32C was not verified: it was damaged on the way".into(),
                ));
            }
            if answer.signature_crc32c != Some(crc32c(&answer.signature)) {
                return Err(self.malformed(
                    "signatureCrc32c mismatch: the signature was damaged on the way".into(),
                ));
            }
            if answer.name != reference {
                return Err(self.malformed(format!("signed with {}, not {reference}", answer.name)));
            }
            signatures.push(answer.signature.to_vec());
        }
        Ok(signatures)
    }

    async fn health(&self) -> Result<(), BackendError> {
        let known = self.known_version.lock().ok().and_then(|k| k.clone());
        let Some(version) = known else {
            return Ok(());
        };
        self.client
            .get_crypto_key_version()
            .set_name(&version)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error(&version, e))
    }
}
