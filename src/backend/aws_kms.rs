//! AWS KMS backend (`aws-sdk-kms`). A signet key version is one KMS key, named by its ARN; the
//! configured `backend_key` (an alias, key id or ARN) finds version 1, and keys signet creates
//! sit behind an alias. Credentials come from the standard AWS chain (environment, profile, web
//! identity, container or instance role). Digests are signed with `MessageType=DIGEST`.
use std::sync::Mutex;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    KeySpec as AwsKeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec,
};

use super::{BackendError, BackendKey, KEY_CREATION_TIMEOUT, KeySpec, SigningBackend};
use crate::algorithm::Algorithm;
use crate::config::backend::AwsKmsConfig;

/// An AWS account and region's KMS used as a signing backend.
pub struct AwsKmsBackend {
    name: String,
    client: Client,
    /// A key this backend serves, for the health check (`kms:DescribeKey` on it).
    known_key: Mutex<Option<String>>,
}

impl std::fmt::Debug for AwsKmsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsBackend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AwsKmsBackend {
    /// Loads the AWS configuration (region, endpoint, credential chain). signet applies its own
    /// deadline and retries to every call, so the SDK makes one attempt.
    pub async fn connect(name: &str, config: &AwsKmsConfig) -> Result<Self, BackendError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(config.timeout.get().max(KEY_CREATION_TIMEOUT))
                    .connect_timeout(config.timeout.get())
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        Ok(AwsKmsBackend {
            name: name.to_string(),
            client: Client::new(&sdk),
            known_key: Mutex::new(None),
        })
    }

    /// An SDK error as a backend error: throttling, outages and network faults are
    /// `Unavailable`; a disabled, deleted or missing key is `KeyUnusable`. Messages carry the
    /// error code and message, never credentials.
    fn error<E: ProvideErrorMetadata>(&self, key: &str, error: SdkError<E>) -> BackendError {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: self.name.clone(),
            reason,
        };
        match &error {
            SdkError::TimeoutError(_) => unavailable("KMS did not answer in time".into()),
            SdkError::DispatchFailure(_) => unavailable("cannot reach KMS".into()),
            SdkError::ResponseError(_) => unavailable("KMS sent an unreadable answer".into()),
            _ => {
                let code = error.code().unwrap_or("unknown").to_string();
                let message = error.message().unwrap_or("").to_string();
                match code.as_str() {
                    "NotFoundException"
                    | "DisabledException"
                    | "KMSInvalidStateException"
                    | "KeyUnavailableException"
                    | "InvalidKeyUsageException" => BackendError::KeyUnusable {
                        backend: self.name.clone(),
                        key: key.to_string(),
                        reason: format!("{code}: {message}"),
                    },
                    "ThrottlingException"
                    | "DependencyTimeoutException"
                    | "KMSInternalException"
                    | "ServiceUnavailableException"
                    | "RequestExpired" => unavailable(format!("{code}: {message}")),
                    _ => BackendError::Failed {
                        backend: self.name.clone(),
                        reason: format!("{code}: {message}"),
                    },
                }
            }
        }
    }

    fn remember(&self, arn: &str) {
        if let Ok(mut known) = self.known_key.lock() {
            known.get_or_insert_with(|| arn.to_string());
        }
    }
}

/// A `backend_key` as KMS names it: ARNs, `alias/…` and key ids as given; a bare name is an alias.
fn key_identifier(backend_key: &str) -> String {
    let is_key_id =
        backend_key.len() == 36 && backend_key.chars().filter(|c| *c == '-').count() == 4;
    if backend_key.starts_with("arn:") || backend_key.starts_with("alias/") || is_key_id {
        backend_key.to_string()
    } else {
        format!("alias/{backend_key}")
    }
}

fn key_spec_for(spec: &KeySpec) -> AwsKeySpec {
    match spec.algorithm {
        Algorithm::ES256 => AwsKeySpec::EccNistP256,
        Algorithm::ES384 => AwsKeySpec::EccNistP384,
        Algorithm::PS256 | Algorithm::RS256 => match spec.rsa_bits {
            4096 => AwsKeySpec::Rsa4096,
            3072 => AwsKeySpec::Rsa3072,
            _ => AwsKeySpec::Rsa2048,
        },
        // Refused before any call (`refuse_eddsa`); never reached.
        Algorithm::EdDSA => AwsKeySpec::EccNistEdwards25519,
    }
}

fn signing_algorithm(algorithm: Algorithm) -> SigningAlgorithmSpec {
    match algorithm {
        Algorithm::ES256 => SigningAlgorithmSpec::EcdsaSha256,
        Algorithm::ES384 => SigningAlgorithmSpec::EcdsaSha384,
        Algorithm::PS256 => SigningAlgorithmSpec::RsassaPssSha256,
        Algorithm::RS256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        // Refused before any call (`refuse_eddsa`); never reached.
        Algorithm::EdDSA => SigningAlgorithmSpec::Ed25519Sha512,
    }
}

impl AwsKmsBackend {
    /// signet keeps no Ed25519 key (the log key) in AWS KMS: the configuration refuses it, and
    /// this refuses it again here. LocalStack cannot create one (localstack#13886), so the path
    /// could not be tested against a real part.
    fn refuse_eddsa(&self, key: &str, algorithm: Algorithm) -> Result<(), BackendError> {
        if algorithm == Algorithm::EdDSA {
            return Err(BackendError::KeyMismatch {
                backend: self.name.clone(),
                key: key.to_string(),
                algorithm,
                reason: "signet does not keep the Ed25519 log key in AWS KMS; use PKCS#11, \
                         Vault Transit or Cloud KMS for it"
                    .into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl SigningBackend for AwsKmsBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError> {
        self.refuse_eddsa(&spec.backend_key, spec.algorithm)?;
        let identifier = key_identifier(&spec.backend_key);
        let described = self.client.describe_key().key_id(&identifier).send().await;
        let (metadata, created) = match described {
            Ok(output) => (output.key_metadata, false),
            Err(e) if e.code() == Some("NotFoundException") && identifier.starts_with("alias/") => {
                // Created inside KMS, sign-only; the alias makes it findable on the next start.
                let output = self
                    .client
                    .create_key()
                    .key_spec(key_spec_for(spec))
                    .key_usage(KeyUsageType::SignVerify)
                    .description(format!("signet key {}", spec.key_name))
                    .send()
                    .await
                    .map_err(|e| self.error(&identifier, e))?;
                let metadata = output.key_metadata;
                let key_id = metadata
                    .as_ref()
                    .map(|m| m.key_id().to_string())
                    .unwrap_or_default();
                self.client
                    .create_alias()
                    .alias_name(&identifier)
                    .target_key_id(&key_id)
                    .send()
                    .await
                    .map_err(|e| self.error(&identifier, e))?;
                (metadata, true)
            }
            Err(e) => return Err(self.error(&identifier, e)),
        };
        let metadata = metadata.ok_or_else(|| BackendError::Malformed {
            backend: self.name.clone(),
            reason: format!("no metadata for {identifier}"),
        })?;
        let mismatch = |reason: String| BackendError::KeyMismatch {
            backend: self.name.clone(),
            key: identifier.clone(),
            algorithm: spec.algorithm,
            reason,
        };
        if metadata.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(mismatch("its key usage is not SIGN_VERIFY".into()));
        }
        if !metadata
            .signing_algorithms()
            .contains(&signing_algorithm(spec.algorithm))
        {
            return Err(mismatch(format!(
                "it does not support {}",
                signing_algorithm(spec.algorithm).as_str()
            )));
        }
        if metadata.key_state() != Some(&KeyState::Enabled) {
            return Err(BackendError::KeyUnusable {
                backend: self.name.clone(),
                key: identifier.clone(),
                reason: format!("its state is {:?}", metadata.key_state()),
            });
        }
        let arn = metadata
            .arn()
            .map(str::to_string)
            .unwrap_or_else(|| metadata.key_id().to_string());
        let spki = self.public_key(&arn, spec.algorithm).await?;
        self.remember(&arn);
        Ok(BackendKey {
            reference: arn,
            public_key_spki: spki,
            created,
        })
    }

    /// A new KMS key, then the alias moved to it; the old key stays for verification.
    async fn create_version(
        &self,
        spec: &KeySpec,
        _current: &str,
        _version: u32,
    ) -> Result<BackendKey, BackendError> {
        self.refuse_eddsa(&spec.backend_key, spec.algorithm)?;
        let alias = key_identifier(&spec.backend_key);
        let output = self
            .client
            .create_key()
            .key_spec(key_spec_for(spec))
            .key_usage(KeyUsageType::SignVerify)
            .description(format!("signet key {} (rotation)", spec.key_name))
            .send()
            .await
            .map_err(|e| self.error(&alias, e))?;
        let metadata = output.key_metadata.ok_or_else(|| BackendError::Malformed {
            backend: self.name.clone(),
            reason: "CreateKey returned no metadata".into(),
        })?;
        let arn = metadata
            .arn()
            .map(str::to_string)
            .unwrap_or_else(|| metadata.key_id().to_string());
        // Past this point a failure leaves a key in KMS that nothing uses (and that is billed):
        // the operator's log names it so it can be scheduled for deletion.
        let left_unused = |error: BackendError| {
            tracing::warn!(key = %arn, backend = %self.name, error = %error, "a KMS key made for a rotation that failed is left unused; schedule its deletion");
            error
        };
        if alias.starts_with("alias/") {
            self.client
                .update_alias()
                .alias_name(&alias)
                .target_key_id(metadata.key_id())
                .send()
                .await
                .map_err(|e| left_unused(self.error(&alias, e)))?;
        }
        let spki = self
            .public_key(&arn, spec.algorithm)
            .await
            .map_err(left_unused)?;
        Ok(BackendKey {
            reference: arn,
            public_key_spki: spki,
            created: true,
        })
    }

    async fn public_key(
        &self,
        reference: &str,
        _algorithm: Algorithm,
    ) -> Result<Vec<u8>, BackendError> {
        let output = self
            .client
            .get_public_key()
            .key_id(reference)
            .send()
            .await
            .map_err(|e| self.error(reference, e))?;
        self.remember(reference);
        output
            .public_key
            .map(Blob::into_inner)
            .ok_or_else(|| BackendError::Malformed {
                backend: self.name.clone(),
                reason: format!("GetPublicKey of {reference} returned no key"),
            })
    }

    async fn sign(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        self.refuse_eddsa(reference, algorithm)?;
        // KMS signs one digest a call.
        let calls = digests.into_iter().map(|digest| {
            self.client
                .sign()
                .key_id(reference)
                .message(Blob::new(digest))
                .message_type(MessageType::Digest)
                .signing_algorithm(signing_algorithm(algorithm))
                .send()
        });
        let mut signatures = Vec::new();
        for outcome in super::call_each(calls).await {
            let output = outcome.map_err(|e| self.error(reference, e))?;
            let signature = output.signature.ok_or_else(|| BackendError::Malformed {
                backend: self.name.clone(),
                reason: "Sign returned no signature".into(),
            })?;
            signatures.push(signature.into_inner());
        }
        Ok(signatures)
    }

    async fn health(&self) -> Result<(), BackendError> {
        let known = self.known_key.lock().ok().and_then(|k| k.clone());
        let Some(key) = known else {
            return Ok(());
        };
        self.client
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error(&key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_aliases() {
        assert_eq!(key_identifier("model-signing"), "alias/model-signing");
        assert_eq!(key_identifier("alias/x"), "alias/x");
        assert_eq!(
            key_identifier("1234abcd-12ab-34cd-56ef-1234567890ab"),
            "1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert!(key_identifier("arn:aws:kms:us-east-1:1:key/k").starts_with("arn:"));
    }
}
