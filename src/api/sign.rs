//! `POST /v1/sign`: one digest or a batch, with a session token. The request's shape is checked
//! here; the signing itself is [`crate::signing::sign`].
use axum::Extension;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Bearer, JsonBody};
use super::{Audit, MAX_BATCH};
use crate::app::AppState;
use crate::session;
use crate::signing::{self, SignedDigest, SigningAudit};

/// The request: `digest` or `digests`, not both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    key: String,
    digest: Option<String>,
    digests: Option<Vec<String>>,
}

/// One signature in the response.
#[derive(Debug, Serialize)]
pub struct SignatureOut {
    key: String,
    key_version: u32,
    key_id: String,
    algorithm: &'static str,
    digest: String,
    signature: String,
    log_index: u64,
}

impl From<SignedDigest> for SignatureOut {
    fn from(signed: SignedDigest) -> Self {
        SignatureOut {
            key: signed.key,
            key_version: signed.key_version,
            key_id: signed.key_id,
            algorithm: signed.algorithm.as_str(),
            digest: signed.digest,
            signature: signed.signature,
            log_index: signed.log_index,
        }
    }
}

/// The 200 body.
#[derive(Debug, Serialize)]
pub struct SignResponse {
    signatures: Vec<SignatureOut>,
}

impl SigningAudit for Audit {
    fn caller(&self, issuer: &str, subject: &str, policy: &str) {
        self.record(|a| {
            a.issuer = Some(issuer.to_string());
            a.subject = Some(subject.to_string());
            a.policy = Some(policy.to_string());
        });
    }

    fn backend_time(&self, micros: u64) {
        self.record(|a| a.backend_us = Some(micros));
    }

    fn signed(&self, count: usize) {
        self.record(|a| a.signatures = Some(count));
    }
}

/// Signs digests with the session's key.
pub async fn sign(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Bearer(token): Bearer,
    JsonBody(request): JsonBody<SignRequest>,
) -> Result<Json<SignResponse>, ApiError> {
    let token_hash = session::hash_token(token.expose());
    let digests = match (request.digest, request.digests) {
        (Some(one), None) => vec![one],
        (None, Some(many)) if many.is_empty() => {
            return Err(ApiError::InvalidRequest(
                "digests must hold at least one digest".into(),
            ));
        }
        (None, Some(many)) if many.len() > MAX_BATCH => {
            return Err(ApiError::InvalidRequest(format!(
                "a batch holds at most {MAX_BATCH} digests"
            )));
        }
        (None, Some(many)) => many,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of digest or digests".into(),
            ));
        }
    };
    let signed = signing::sign(&state, &token_hash, &request.key, &digests, &audit).await?;
    Ok(Json(SignResponse {
        signatures: signed.into_iter().map(SignatureOut::from).collect(),
    }))
}
