//! `POST /v1/sessions` (OIDC ID token in, session token out), `DELETE /v1/sessions/current`, and
//! `POST /v1/sessions/revoke` (an administrator ends live sessions).
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::Audit;
use super::error::ApiError;
use super::extract::{Bearer, JsonBody, OptionalJsonBody};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::config::Role;
use crate::log::LogError;
use crate::log::event::{Actor, CanonicalClaims, LogEvent, MAX_CLAIMS_BYTES};
use crate::policy;
use crate::session::{self, SessionRequest};
use crate::store::SessionScope;

/// The 201 body.
#[derive(Debug, Serialize)]
pub struct SessionCreated {
    session_token: String,
    expires_at: String,
    keys: Vec<String>,
    max_signatures: u64,
    issuer: String,
    subject: String,
    policy: String,
}

/// Opens a session for an OIDC-authenticated caller within its policy's limits.
pub async fn create(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Bearer(id_token): Bearer,
    OptionalJsonBody(request): OptionalJsonBody<SessionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    request.check()?;
    if session::looks_like_token(id_token.expose()) {
        return Err(ApiError::InvalidToken(
            "this is a session token; open a session with an OIDC ID token".into(),
        ));
    }
    let caller = state.verifier.verify(id_token.expose()).await?;
    audit.record(|a| {
        a.issuer = Some(caller.issuer.clone());
        a.subject = Some(caller.subject.clone());
    });
    if let Some(keys) = &request.keys {
        for key in keys {
            // Unknown names are refused the same way as names the policy does not grant, so
            // the answer does not reveal which keys exist.
            if state.keys.get(key).is_err() {
                return Err(policy::PolicyError::Denied.into());
            }
        }
    }
    let decision = policy::decide(
        &state.config.policies,
        &caller,
        request.keys.as_deref(),
        Role::Signer,
    )
    .inspect_err(
        |_| tracing::info!(issuer = %caller.issuer, subject = %caller.subject, "no policy matched"),
    )?;
    audit.record(|a| a.policy = Some(decision.policy.clone()));

    let (token, token_hash) = session::new_token();
    let record = session::grant(
        token_hash,
        &caller,
        &decision,
        &request,
        state.clock.now_unix(),
    )
    .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let event = LogEvent::session_created(&record, record.created_at).map_err(LogError::from)?;
    // Every entry naming this session carries its claims: bounded so that each stays within a
    // log entry's size. Refused whole, never cut: an identity check must not run on cut claims.
    let claims_bytes = event.claims.as_ref().map_or(0, CanonicalClaims::len);
    if claims_bytes > MAX_CLAIMS_BYTES {
        return Err(ApiError::InvalidRequest(format!(
            "the ID token's claims are {claims_bytes} bytes as canonical JSON; signet logs at \
             most {MAX_CLAIMS_BYTES}"
        )));
    }
    state.store.create_session(&record).await?;
    if let Err(e) = state.log.append(&[event]).await {
        // No session without its log entry: end it, and tell the caller to retry.
        if let Err(end) = state.store.end_session(&record.token_hash).await {
            tracing::error!(error = %end, "could not end a session whose log entry failed");
        }
        return Err(e.into());
    }
    state.sessions.insert(record.clone(), record.created_at);
    let body = SessionCreated {
        session_token: token.expose().clone(),
        expires_at: rfc3339(record.expires_at),
        keys: record.keys,
        max_signatures: record.max_signatures,
        issuer: caller.iss,
        subject: record.subject,
        policy: record.policy,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Ends the caller's session; 204, or 401 if it was not a live session.
pub async fn end(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Bearer(token): Bearer,
) -> Result<StatusCode, ApiError> {
    let hash = session::hash_token(token.expose());
    let record = state.store.session(&hash).await?;
    if let Some(record) = &record {
        audit.record(|a| {
            a.issuer = Some(record.issuer.clone());
            a.subject = Some(record.subject.clone());
            a.policy = Some(record.policy.clone());
        });
    }
    state.sessions.remove(&hash);
    let Some(record) = record else {
        return Err(ApiError::InvalidToken(
            "no live session for this token".into(),
        ));
    };
    if !state.store.end_session(&hash).await? {
        return Err(ApiError::InvalidToken(
            "no live session for this token".into(),
        ));
    }
    state
        .log
        .append(&[LogEvent::session_ended(&record, state.clock.now_unix())])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sessions/revoke` body: exactly one of `subject`, `policy` or `all`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    subject: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    all: bool,
    reason: Option<String>,
}

/// `POST /v1/sessions/revoke` answer.
#[derive(Debug, Serialize)]
pub struct Revoked {
    revoked: u64,
}

/// Ends live sessions by subject, policy or all, for an admin of every key they may use (`all`:
/// of every signing key). Each ended session is refused from its next request on, and the
/// revocation is logged.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Bearer(id_token): Bearer,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Json<Revoked>, ApiError> {
    let scope = match (&request.subject, &request.policy, request.all) {
        (Some(subject), None, false) if !subject.is_empty() => {
            SessionScope::Subject(subject.clone())
        }
        (None, Some(policy), false) if !policy.is_empty() => SessionScope::Policy(policy.clone()),
        (None, None, true) => SessionScope::All,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of subject, policy or \"all\": true".into(),
            ));
        }
    };
    let reason = request.reason.unwrap_or_else(|| "sessions revoked".into());
    check_reason(&reason)?;
    if session::looks_like_token(id_token.expose()) {
        return Err(ApiError::InvalidToken(
            "revoking sessions needs an OIDC ID token, not a session token".into(),
        ));
    }
    let caller = state.verifier.verify(id_token.expose()).await?;
    audit.record(|a| {
        a.issuer = Some(caller.issuer.clone());
        a.subject = Some(caller.subject.clone());
    });
    let now = state.clock.now_unix();
    let sessions = state.store.live_sessions(&scope, now).await?;
    let mut keys: Vec<String> = match scope {
        SessionScope::All => state
            .keys
            .all()
            .map(|k| k.config.name.clone())
            .filter(|name| !state.keys.is_log_key(name))
            .collect(),
        _ => sessions
            .iter()
            .flat_map(|s| s.keys.iter().cloned())
            .collect(),
    };
    keys.sort();
    keys.dedup();
    // With no session in scope there is nothing to guard but the answer: any admin may have it.
    let requested = (!keys.is_empty()).then_some(keys.as_slice());
    let decision = policy::decide(&state.config.policies, &caller, requested, Role::Admin)?;
    audit.record(|a| a.policy = Some(decision.policy.clone()));
    let hashes: Vec<String> = sessions.iter().map(|s| s.token_hash.clone()).collect();
    for hash in &hashes {
        state.sessions.remove(hash);
    }
    let revoked = state.store.end_sessions(hashes).await?;
    let scope_text = match &scope {
        SessionScope::Subject(subject) => format!("subject={subject}"),
        SessionScope::Policy(policy) => format!("policy={policy}"),
        SessionScope::All => "all".to_string(),
    };
    let actor = Actor::Caller {
        issuer: caller.iss,
        subject: caller.subject,
        policy: decision.policy,
    };
    state
        .log
        .append(&[LogEvent::sessions_revoked(
            &scope_text,
            revoked,
            &actor,
            &reason,
            now,
        )])
        .await?;
    tracing::warn!(scope = %scope_text, revoked, "sessions revoked");
    Ok(Json(Revoked { revoked }))
}

/// The most a reason may hold: it is written into a log leaf.
pub const MAX_REASON_BYTES: usize = 1024;

/// Refuses a reason that is too long or holds control characters.
pub fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.len() > MAX_REASON_BYTES || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::InvalidRequest(format!(
            "reason must be at most {MAX_REASON_BYTES} bytes of text"
        )));
    }
    Ok(())
}
