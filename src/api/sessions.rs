//! `POST /v1/sessions` (OIDC ID token in, session token out) and `DELETE /v1/sessions/current`.
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use super::Audit;
use super::error::ApiError;
use super::extract::{Bearer, OptionalJsonBody};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::config::Role;
use crate::log::LogError;
use crate::log::event::LogEvent;
use crate::policy;
use crate::session::{self, SessionRequest};

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
    );
    let event = LogEvent::session_created(&record, record.created_at).map_err(LogError::from)?;
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
