//! `GET /v1/trust`: the trust root (`signet-trust/v1`). Every signing key version with the log
//! entries that created, deactivated and revoked it, each with its inclusion proof against the
//! latest checkpoint, which is embedded. Evidence, not assertion: a verifier checks it all under
//! the log key it pinned.
use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::ApiError;
use crate::app::AppState;
use crate::jwks;
use crate::store::{KeyState, StoredCheckpoint};
use crate::trust::{FORMAT, ProvenLogEntry, TrustKey, TrustRoot, TrustVersion};

/// Builds the trust root over the latest checkpoint. Entries that no checkpoint covers yet are
/// left out (a version made in the last second appears in the next root).
pub async fn trust(State(state): State<AppState>) -> Result<Json<TrustRoot>, ApiError> {
    let checkpoint = covering_checkpoint(&state).await?;
    let size = checkpoint.size;
    let covered = |index: Option<u64>| index.filter(|i| *i < size);
    let mut keys = Vec::new();
    for key in state.keys.all() {
        if state.keys.is_log_key(&key.config.name) {
            continue;
        }
        let versions: Vec<_> = key
            .versions()
            .into_iter()
            .filter(|v| v.state != KeyState::Pending)
            .collect();
        let mut listed = Vec::new();
        for (position, version) in versions.iter().enumerate() {
            let Some(created) = covered(version.log_index) else {
                continue;
            };
            // The rotation that made the next version active is the one that ended this one's
            // signing (its `key_rotated` entry names this version as `previous_version`).
            let deactivated = covered(versions.get(position + 1).and_then(|n| n.log_index));
            let revoked = covered(version.revocation.map(|r| r.log_index));
            let jwk = jwks::jwk_from_spki(&version.public_key_spki, version.algorithm)
                .map_err(|e| ApiError::Internal(format!("key {}: {e}", key.config.name)))?;
            listed.push(TrustVersion {
                version: version.version,
                kid: version.key_id.clone(),
                jwk,
                state: version.state.as_str().to_string(),
                created: prove(&state, created, size).await?,
                deactivated: match deactivated {
                    Some(index) => Some(prove(&state, index, size).await?),
                    None => None,
                },
                revoked: match revoked {
                    Some(index) => Some(prove(&state, index, size).await?),
                    None => None,
                },
            });
        }
        keys.push(TrustKey {
            name: key.config.name.clone(),
            algorithm: key.algorithm().as_str().to_string(),
            versions: listed,
        });
    }
    Ok(Json(TrustRoot {
        format: FORMAT.to_string(),
        origin: state.log.origin().to_string(),
        log_key: state.log_key.to_vkey(),
        witnesses: Vec::new(),
        witness_quorum: 0,
        checkpoint: checkpoint.note,
        keys,
    }))
}

/// The latest checkpoint, once it covers the entries logged before this request (a root
/// fetched right after a rotation then shows it). The checkpointer signs on its own schedule,
/// so this waits for at most two of its intervals and never signs anything itself.
async fn covering_checkpoint(state: &AppState) -> Result<StoredCheckpoint, ApiError> {
    let size = state.log.size().await?;
    let interval = state.config.log.checkpoint_interval.get();
    let deadline = tokio::time::Instant::now() + 2 * interval;
    loop {
        let latest = state.log.latest_checkpoint().await?;
        match latest {
            Some(latest) if latest.size >= size || tokio::time::Instant::now() >= deadline => {
                return Ok(latest);
            }
            None if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::NotFound(
                    "no checkpoint has been signed yet".into(),
                ));
            }
            _ => tokio::time::sleep(interval / 10).await,
        }
    }
}

/// Entry `index` with its inclusion proof in the tree of `size` leaves.
async fn prove(state: &AppState, index: u64, size: u64) -> Result<ProvenLogEntry, ApiError> {
    let entry = state
        .log
        .entries(index, index + 1)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(format!("log entry {index} is missing")))?;
    let event: serde_json::Value = serde_json::from_slice(&entry.leaf)
        .map_err(|_| ApiError::Internal(format!("log entry {index} is not JSON")))?;
    let proof = state.log.inclusion_proof(index, size).await?;
    Ok(ProvenLogEntry {
        index,
        time: event["time"].as_str().unwrap_or_default().to_string(),
        leaf_input: STANDARD.encode(&entry.leaf),
        inclusion_proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    })
}
