//! `GET /v1/keys`: every key with every version, its state and dates.
use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::app::AppState;
use crate::clock::rfc3339;

/// One key in the listing.
#[derive(Debug, Serialize)]
pub struct KeyListing {
    name: String,
    algorithm: &'static str,
    backend: String,
    versions: Vec<VersionListing>,
}

/// One version in the listing.
#[derive(Debug, Serialize)]
pub struct VersionListing {
    version: u32,
    key_id: String,
    state: &'static str,
    created_at: String,
    retire_at: Option<String>,
}

/// Lists keys in name order, versions oldest first.
pub async fn list(State(state): State<AppState>) -> Json<Vec<KeyListing>> {
    Json(
        state
            .keys
            .all()
            .map(|key| KeyListing {
                name: key.config.name.clone(),
                algorithm: key.algorithm().as_str(),
                backend: key.backend.name().to_string(),
                versions: key
                    .versions()
                    .into_iter()
                    .map(|v| VersionListing {
                        version: v.version,
                        key_id: v.key_id,
                        state: v.state.as_str(),
                        created_at: rfc3339(v.created_at),
                        retire_at: v.retire_at.map(rfc3339),
                    })
                    .collect(),
            })
            .collect(),
    )
}
