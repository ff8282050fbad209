//! `GET /v1/keys`: every key with every version, its state and dates. `POST
//! /v1/keys/{name}/rotate` and `/retire`: key changes by an OIDC caller of an admin policy
//! that names the key.
use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Bearer, JsonBody, OptionalJsonBody};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::config::policy::Role;
use crate::log::event::Actor;
use crate::policy;
use crate::session;
use crate::store::KeyVersionRecord;

use super::Audit;

/// One key in the listing.
#[derive(Debug, Serialize)]
pub struct KeyListing {
    name: String,
    /// `"log"` for the log key, which signs checkpoints only.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
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
    /// Set when revoked: from when it is taken to be compromised.
    #[serde(skip_serializing_if = "Option::is_none")]
    compromised_since: Option<String>,
}

/// Lists keys in name order, versions oldest first.
pub async fn list(State(state): State<AppState>) -> Json<Vec<KeyListing>> {
    Json(
        state
            .keys
            .all()
            .map(|key| KeyListing {
                name: key.config.name.clone(),
                role: state.keys.is_log_key(&key.config.name).then_some("log"),
                algorithm: key.algorithm().as_str(),
                backend: key.backend.name().to_string(),
                versions: key
                    .versions()
                    .into_iter()
                    .filter(|v| v.state != crate::store::KeyState::Pending)
                    .map(|v| VersionListing::from(&v))
                    .collect(),
            })
            .collect(),
    )
}

impl From<&KeyVersionRecord> for VersionListing {
    fn from(v: &KeyVersionRecord) -> Self {
        VersionListing {
            version: v.version,
            key_id: v.key_id.clone(),
            state: v.state.as_str(),
            created_at: rfc3339(v.created_at),
            retire_at: v.retire_at.map(rfc3339),
            compromised_since: v.revocation.map(|r| rfc3339(r.compromised_since)),
        }
    }
}

/// The answer to a key change: the key and the version it concerns.
#[derive(Debug, Serialize)]
pub struct KeyChanged {
    key: String,
    #[serde(flatten)]
    version: VersionListing,
}

/// `POST /v1/keys/{name}/rotate` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Why, for the log.
    reason: Option<String>,
}

/// `POST /v1/keys/{name}/retire` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    /// The version to retire.
    version: Option<u32>,
    /// Why, for the log.
    reason: Option<String>,
}

/// `POST /v1/keys/{name}/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The version to revoke.
    version: u32,
    /// RFC 3339, not in the future.
    compromised_since: String,
    /// Why, for the log.
    reason: String,
}

/// The admin caller, if an admin policy of its issuer names `key`; 403 otherwise.
async fn admin_for(
    state: &AppState,
    audit: &Audit,
    id_token: &str,
    key: &str,
) -> Result<Actor, ApiError> {
    if session::looks_like_token(id_token) {
        return Err(ApiError::InvalidToken(
            "key changes need an OIDC ID token, not a session token".into(),
        ));
    }
    let caller = state.verifier.verify(id_token).await?;
    audit.record(|a| {
        a.issuer = Some(caller.issuer.clone());
        a.subject = Some(caller.subject.clone());
    });
    // An unknown key is refused like a key the policy does not grant: no probing for names.
    if state.keys.get(key).is_err() {
        return Err(policy::PolicyError::Denied.into());
    }
    let decision = policy::decide(
        &state.config.policies,
        &caller,
        Some(&[key.to_string()]),
        Role::Admin,
    )?;
    audit.record(|a| a.policy = Some(decision.policy.clone()));
    Ok(Actor::Caller {
        issuer: caller.iss,
        subject: caller.subject,
        policy: decision.policy,
    })
}

/// Runs a key change to its end even if the request that asked for it is dropped.
async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(change)
        .await
        .map_err(|e| ApiError::Internal(format!("the key change stopped: {e}")))
}

/// Rotates a key: a new version inside the backend becomes active; the old one verify-only.
pub async fn rotate(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Path(name): Path<String>,
    Bearer(id_token): Bearer,
    OptionalJsonBody(request): OptionalJsonBody<RotateRequest>,
) -> Result<Json<KeyChanged>, ApiError> {
    let actor = admin_for(&state, &audit, id_token.expose(), &name).await?;
    let reason = request.reason.unwrap_or_else(|| "manual rotation".into());
    super::sessions::check_reason(&reason)?;
    // On a task of its own: a request cut off by its timeout or a closed connection must not
    // stop a key change half way.
    let task_state = state.clone();
    let task_name = name.clone();
    let version = detached(async move {
        task_state
            .keys
            .rotate(&task_name, &actor, &reason, &task_state.key_context())
            .await
    })
    .await??;
    Ok(Json(KeyChanged {
        key: name,
        version: (&version).into(),
    }))
}

/// Retires a version at once (a compromised key); an active one is replaced first.
pub async fn retire(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Path(name): Path<String>,
    Bearer(id_token): Bearer,
    OptionalJsonBody(request): OptionalJsonBody<RetireRequest>,
) -> Result<Json<KeyChanged>, ApiError> {
    let actor = admin_for(&state, &audit, id_token.expose(), &name).await?;
    let version = request
        .version
        .ok_or_else(|| ApiError::InvalidRequest("give the version to retire".into()))?;
    let reason = request
        .reason
        .unwrap_or_else(|| "emergency retirement".into());
    super::sessions::check_reason(&reason)?;
    let task_state = state.clone();
    let task_name = name.clone();
    let retired = detached(async move {
        task_state
            .keys
            .retire(
                &task_name,
                version,
                &actor,
                &reason,
                &task_state.key_context(),
            )
            .await
    })
    .await??;
    Ok(Json(KeyChanged {
        key: name,
        version: (&retired).into(),
    }))
}

/// Revokes a version as compromised from a time: irreversible, logged; signatures logged from
/// that time on stop verifying. An active version is replaced first.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Path(name): Path<String>,
    Bearer(id_token): Bearer,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Json<KeyChanged>, ApiError> {
    let compromised_since =
        crate::clock::parse_rfc3339(&request.compromised_since).ok_or_else(|| {
            ApiError::InvalidRequest("compromised_since must be an RFC 3339 time".into())
        })?;
    super::sessions::check_reason(&request.reason)?;
    let actor = admin_for(&state, &audit, id_token.expose(), &name).await?;
    let task_state = state.clone();
    let task_name = name.clone();
    let revoked = detached(async move {
        task_state
            .keys
            .revoke(
                &task_name,
                request.version,
                compromised_since,
                &actor,
                &request.reason,
                &task_state.key_context(),
            )
            .await
    })
    .await??;
    Ok(Json(KeyChanged {
        key: name,
        version: (&revoked).into(),
    }))
}
