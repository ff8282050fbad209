//! Vault Transit backend (HashiCorp Vault or OpenBao). Keys are Transit keys; a signet key
//! version is a Transit key version, named `NAME:VERSION`. `vaultrs` creates, reads and rotates
//! keys and renews the token; signing goes over plain HTTP because Transit's `batch_input` and
//! PSS `salt_length` are not in `vaultrs` 0.8.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::task::JoinHandle;
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::CreateKeyRequest;
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{BackendError, BackendKey, KEY_CREATION_TIMEOUT, KeySpec, SigningBackend};

mod sign;
use crate::algorithm::Algorithm;
use crate::config::backend::VaultTransitConfig;
use crate::config::secret::Secret;

/// A Transit mount used as a signing backend.
pub struct VaultTransitBackend {
    name: String,
    mount: String,
    address: String,
    namespace: Option<String>,
    token: Secret<String>,
    token_env: String,
    vault: Arc<VaultClient>,
    http: reqwest::Client,
    renewal: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VaultTransitBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransitBackend")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl Drop for VaultTransitBackend {
    fn drop(&mut self) {
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
    }
}

impl VaultTransitBackend {
    /// Reads the token from `token_env`, checks it with Vault and starts renewing it when it is
    /// renewable.
    pub async fn connect(name: &str, config: &VaultTransitConfig) -> Result<Self, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: name.to_string(),
            reason,
        };
        let token = std::env::var(&config.token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unavailable(format!(
                    "the environment variable {} holding the Vault token is not set",
                    config.token_env
                ))
            })?;
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&config.address)
            .token(token.clone())
            .timeout(Some(config.timeout.get().max(KEY_CREATION_TIMEOUT)));
        if let Some(namespace) = &config.namespace {
            settings.namespace(Some(namespace.clone()));
        }
        let settings = settings
            .build()
            .map_err(|e| unavailable(format!("client settings: {e}")))?;
        let vault =
            Arc::new(VaultClient::new(settings).map_err(|e| unavailable(format!("client: {e}")))?);
        let http = reqwest::Client::builder()
            .timeout(config.timeout.get())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| unavailable(format!("HTTP client: {e}")))?;
        let mut backend = VaultTransitBackend {
            name: name.to_string(),
            mount: config.mount.trim_matches('/').to_string(),
            address: config.address.trim_end_matches('/').to_string(),
            namespace: config.namespace.clone(),
            token: Secret::new(token),
            token_env: config.token_env.clone(),
            vault,
            http,
            renewal: None,
        };
        let lookup = vaultrs::token::lookup_self(backend.vault.as_ref())
            .await
            .map_err(|e| backend.error(e, "checking the token"))?;
        if lookup.renewable == Some(true) && lookup.ttl > 0 {
            backend.renewal = Some(tokio::spawn(renew_token(
                backend.vault.clone(),
                backend.name.clone(),
                Duration::from_secs(lookup.ttl),
            )));
        }
        Ok(backend)
    }

    /// A `vaultrs` error as a backend error; never includes the token.
    fn error(&self, error: ClientError, doing: &str) -> BackendError {
        match error {
            ClientError::APIError { code: 403, .. } => BackendError::Unavailable {
                backend: self.name.clone(),
                reason: format!(
                    "{doing}: Vault refused the token (expired, revoked or lacking a policy); \
                     set a valid one in {}",
                    self.token_env
                ),
            },
            ClientError::APIError { code, errors } if code == 429 || code >= 500 => {
                BackendError::Unavailable {
                    backend: self.name.clone(),
                    reason: format!("{doing}: HTTP {code}: {}", errors.join("; ")),
                }
            }
            ClientError::APIError { code, errors } => BackendError::Failed {
                backend: self.name.clone(),
                reason: format!("{doing}: HTTP {code}: {}", errors.join("; ")),
            },
            ClientError::RestClientError { .. } => BackendError::Unavailable {
                backend: self.name.clone(),
                reason: format!("{doing}: cannot reach {}", self.address),
            },
            other => BackendError::Malformed {
                backend: self.name.clone(),
                reason: format!("{doing}: {other}"),
            },
        }
    }

    /// The key's versions and their public keys (SPKI DER), checking the key's type.
    async fn read_key(
        &self,
        key: &str,
        algorithm: Algorithm,
    ) -> Result<Option<Vec<(u32, Vec<u8>)>>, BackendError> {
        let answer = match vaultrs::transit::key::read(self.vault.as_ref(), &self.mount, key).await
        {
            Ok(answer) => answer,
            Err(ClientError::APIError { code: 404, .. }) => return Ok(None),
            Err(e) => return Err(self.error(e, &format!("reading key {key}"))),
        };
        let mismatch = |reason: String| BackendError::KeyMismatch {
            backend: self.name.clone(),
            key: key.to_string(),
            algorithm,
            reason,
        };
        if !key_type_fits(&answer.key_type, algorithm) {
            return Err(mismatch(format!("it is a {:?} key", answer.key_type)));
        }
        let ReadKeyData::Asymmetric(entries) = answer.keys else {
            return Err(mismatch("it has no public keys".into()));
        };
        let mut versions = Vec::new();
        for (version, entry) in entries {
            let version: u32 = version.parse().map_err(|_| BackendError::Malformed {
                backend: self.name.clone(),
                reason: format!("key {key} has a version named {version:?}"),
            })?;
            // Transit gives ECDSA and RSA keys as PEM, Ed25519 keys as base64 of the raw key.
            let spki = if algorithm == Algorithm::EdDSA {
                STANDARD
                    .decode(entry.public_key.trim())
                    .ok()
                    .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
                    .map(|raw| crate::jwks::ed25519_spki(&raw))
            } else {
                crate::jwks::pem_to_spki(&entry.public_key)
            };
            let spki = spki.ok_or_else(|| BackendError::Malformed {
                backend: self.name.clone(),
                reason: format!("key {key} version {version}: public key is malformed"),
            })?;
            versions.push((version, spki));
        }
        versions.sort_by_key(|(version, _)| *version);
        Ok(Some(versions))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{}", self.address, path))
            .header("X-Vault-Token", self.token.expose().as_str());
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        request
    }

    fn http_error(&self, error: reqwest::Error) -> BackendError {
        if error.is_timeout() {
            BackendError::Unavailable {
                backend: self.name.clone(),
                reason: "Vault did not answer in time".into(),
            }
        } else {
            BackendError::Unavailable {
                backend: self.name.clone(),
                reason: format!("cannot reach {}", self.address),
            }
        }
    }
}

/// Renews a renewable token at half its TTL for as long as the backend lives.
async fn renew_token(vault: Arc<VaultClient>, backend: String, mut ttl: Duration) {
    loop {
        tokio::time::sleep((ttl / 2).max(Duration::from_secs(1))).await;
        match vaultrs::token::renew_self(vault.as_ref(), None).await {
            Ok(auth) => {
                ttl = Duration::from_secs(auth.lease_duration);
                tracing::debug!(
                    backend,
                    ttl_s = auth.lease_duration,
                    "renewed the Vault token"
                );
            }
            Err(e) => {
                tracing::warn!(backend, error = %e, "could not renew the Vault token; retrying");
                ttl = Duration::from_secs(10);
            }
        }
    }
}

fn key_type_fits(key_type: &KeyType, algorithm: Algorithm) -> bool {
    match algorithm {
        Algorithm::ES256 => matches!(key_type, KeyType::EcdsaP256),
        Algorithm::ES384 => matches!(key_type, KeyType::EcdsaP384),
        Algorithm::EdDSA => matches!(key_type, KeyType::Ed25519),
        Algorithm::PS256 | Algorithm::RS256 => {
            matches!(
                key_type,
                KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096
            )
        }
    }
}

fn key_type_for(spec: &KeySpec) -> KeyType {
    match spec.algorithm {
        Algorithm::ES256 => KeyType::EcdsaP256,
        Algorithm::ES384 => KeyType::EcdsaP384,
        Algorithm::EdDSA => KeyType::Ed25519,
        Algorithm::PS256 | Algorithm::RS256 => match spec.rsa_bits {
            4096 => KeyType::Rsa4096,
            3072 => KeyType::Rsa3072,
            _ => KeyType::Rsa2048,
        },
    }
}

/// `NAME:VERSION`.
fn parse_reference(reference: &str) -> Option<(&str, u32)> {
    let (name, version) = reference.rsplit_once(':')?;
    Some((name, version.parse().ok()?))
}

#[async_trait]
impl SigningBackend for VaultTransitBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError> {
        let key = &spec.backend_key;
        let (versions, created) = match self.read_key(key, spec.algorithm).await? {
            Some(versions) => (versions, false),
            None => {
                let mut options = CreateKeyRequest::builder();
                options.key_type(key_type_for(spec)).exportable(false);
                vaultrs::transit::key::create(
                    self.vault.as_ref(),
                    &self.mount,
                    key,
                    Some(&mut options),
                )
                .await
                .map_err(|e| self.error(e, &format!("creating key {key}")))?;
                let versions = self.read_key(key, spec.algorithm).await?.ok_or_else(|| {
                    BackendError::KeyUnusable {
                        backend: self.name.clone(),
                        key: key.clone(),
                        reason: "created, but Vault does not find it".into(),
                    }
                })?;
                (versions, true)
            }
        };
        let (version, spki) =
            versions
                .into_iter()
                .last()
                .ok_or_else(|| BackendError::KeyUnusable {
                    backend: self.name.clone(),
                    key: key.clone(),
                    reason: "the key has no versions".into(),
                })?;
        Ok(BackendKey {
            reference: format!("{key}:{version}"),
            public_key_spki: spki,
            created,
        })
    }

    /// Transit's own `rotate`: a new version of the same Transit key.
    async fn create_version(
        &self,
        spec: &KeySpec,
        current: &str,
        _version: u32,
    ) -> Result<BackendKey, BackendError> {
        let (key, current_version) =
            parse_reference(current).ok_or_else(|| BackendError::KeyUnusable {
                backend: self.name.clone(),
                key: current.to_string(),
                reason: "not a NAME:VERSION reference".into(),
            })?;
        vaultrs::transit::key::rotate(self.vault.as_ref(), &self.mount, key)
            .await
            .map_err(|e| self.error(e, &format!("rotating key {key}")))?;
        let versions = self
            .read_key(key, spec.algorithm)
            .await?
            .unwrap_or_default();
        let (version, spki) = versions
            .into_iter()
            .last()
            .filter(|(v, _)| *v > current_version)
            .ok_or_else(|| BackendError::Malformed {
                backend: self.name.clone(),
                reason: format!("key {key} has no version newer than {current_version}"),
            })?;
        Ok(BackendKey {
            reference: format!("{key}:{version}"),
            public_key_spki: spki,
            created: true,
        })
    }

    async fn public_key(
        &self,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, BackendError> {
        let unusable = |reason: &str| BackendError::KeyUnusable {
            backend: self.name.clone(),
            key: reference.to_string(),
            reason: reason.to_string(),
        };
        let (key, version) =
            parse_reference(reference).ok_or_else(|| unusable("not a NAME:VERSION reference"))?;
        let versions = self
            .read_key(key, algorithm)
            .await?
            .ok_or_else(|| unusable("Vault no longer has this key"))?;
        versions
            .into_iter()
            .find(|(v, _)| *v == version)
            .map(|(_, spki)| spki)
            .ok_or_else(|| unusable("Vault no longer has this version (trimmed?)"))
    }

    async fn sign(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let (key, version) =
            parse_reference(reference).ok_or_else(|| BackendError::KeyUnusable {
                backend: self.name.clone(),
                key: reference.to_string(),
                reason: "not a NAME:VERSION reference".into(),
            })?;
        self.sign_batch(key, version, algorithm, &digests).await
    }

    async fn health(&self) -> Result<(), BackendError> {
        // The token is checked, not just the server: an expired token shows in /readyz.
        vaultrs::token::lookup_self(self.vault.as_ref())
            .await
            .map(drop)
            .map_err(|e| self.error(e, "checking the token"))
    }
}
