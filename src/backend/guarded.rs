//! `Guarded`: any backend behind the operator's limits (a deadline per call, bounded retries
//! with back-off) and, for backends across a network, every signature checked against its
//! version's public key before it leaves.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{BackendError, BackendKey, KEY_CREATION_TIMEOUT, KeySpec, SigningBackend};
use crate::algorithm::Algorithm;
use crate::signature::PublicKey;

/// First pause before a retry; doubled each time, never past the call's deadline.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);

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

/// Whether every signature verifies over its digest.
fn all_verify(key: &PublicKey, digests: &[Vec<u8>], signatures: &[Vec<u8>]) -> bool {
    digests
        .iter()
        .zip(signatures)
        .all(|(digest, signature)| key.verifies(digest, signature))
}
