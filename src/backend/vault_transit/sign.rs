//! Transit's sign endpoint over plain HTTP: one batch per call, each answer checked to carry the
//! version asked for.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::VaultTransitBackend;
use crate::algorithm::{Algorithm, DigestAlgorithm};
use crate::backend::BackendError;

#[derive(Deserialize)]
struct SignAnswer {
    data: SignData,
}

#[derive(Deserialize)]
struct SignData {
    batch_results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl VaultTransitBackend {
    /// Signs `digests` (or, for Ed25519, messages) with version `version` of Transit key `key`.
    pub(super) async fn sign_batch(
        &self,
        key: &str,
        version: u32,
        algorithm: Algorithm,
        digests: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        // Ed25519 signs the raw message (not prehashed); the hash in the path is then ignored.
        let (hash, prehashed) = match algorithm.digest_algorithm() {
            Some(DigestAlgorithm::Sha256) => ("sha2-256", true),
            Some(DigestAlgorithm::Sha384) => ("sha2-384", true),
            None => ("sha2-256", false),
        };
        let inputs: Vec<Value> = digests
            .iter()
            .map(|d| json!({"input": STANDARD.encode(d)}))
            .collect();
        let mut body = json!({
            "key_version": version,
            "prehashed": prehashed,
            "marshaling_algorithm": "asn1",
            "batch_input": inputs,
        });
        match algorithm {
            // Transit's PSS salt defaults to the maximum; JOSE PS256 wants the hash length.
            Algorithm::PS256 => {
                body["signature_algorithm"] = json!("pss");
                body["salt_length"] = json!("hash");
            }
            Algorithm::RS256 => body["signature_algorithm"] = json!("pkcs1v15"),
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => {}
        }
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("{}/sign/{key}/{hash}", self.mount),
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| self.http_error(e))?;
        let status = response.status().as_u16();
        if status != 200 {
            let errors: Value = response.json().await.unwrap_or(Value::Null);
            let detail = errors["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(match status {
                403 => BackendError::Unavailable {
                    backend: self.name.clone(),
                    reason: format!(
                        "Vault refused the token (expired, revoked or lacking a policy); set a \
                         valid one in {}",
                        self.token_env
                    ),
                },
                429 | 500.. => BackendError::Unavailable {
                    backend: self.name.clone(),
                    reason: format!("signing with {key}: HTTP {status}: {detail}"),
                },
                _ => BackendError::KeyUnusable {
                    backend: self.name.clone(),
                    key: key.to_string(),
                    reason: format!("HTTP {status}: {detail}"),
                },
            });
        }
        let answer: SignAnswer = response.json().await.map_err(|e| BackendError::Malformed {
            backend: self.name.clone(),
            reason: format!("sign answer: {e}"),
        })?;
        let malformed = |reason: String| BackendError::Malformed {
            backend: self.name.clone(),
            reason,
        };
        answer
            .data
            .batch_results
            .into_iter()
            .map(|result| {
                if let Some(error) = result.error.filter(|e| !e.is_empty()) {
                    return Err(BackendError::Failed {
                        backend: self.name.clone(),
                        reason: format!("signing with {key}: {error}"),
                    });
                }
                let signature = result
                    .signature
                    .ok_or_else(|| malformed("a batch result has no signature".into()))?;
                // `vault:vN:BASE64`: the version must be the one asked for.
                let mut parts = signature.splitn(3, ':');
                let (Some("vault"), Some(v), Some(encoded)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(malformed("a signature is not vault:vN:...".into()));
                };
                if v != format!("v{version}") {
                    return Err(malformed(format!("signed with {v}, not v{version}")));
                }
                STANDARD
                    .decode(encoded)
                    .map_err(|_| malformed("a signature is not base64".into()))
            })
            .collect()
    }
}
