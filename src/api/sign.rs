//! `POST /v1/sign`: one digest or a batch, with a session token. The backend signs; then the
//! quota is charged and the signatures are logged in one durable commit, before any is returned.
use axum::Extension;
use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Bearer, JsonBody};
use super::{Audit, MAX_BATCH};
use crate::algorithm::{Algorithm, Digest};
use crate::app::AppState;
use crate::keys::{ActiveVersion, ManagedKey};
use crate::log::LogError;
use crate::log::event::{CanonicalClaims, LogEvent};
use crate::session::{self, CachedSession};
use crate::store::{AppendOutcome, QuotaCharge, QuotaOutcome};
use std::sync::atomic::Ordering;

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

/// The 200 body.
#[derive(Debug, Serialize)]
pub struct SignResponse {
    signatures: Vec<SignatureOut>,
}

/// Signs digests with the session's key.
pub async fn sign(
    State(state): State<AppState>,
    Extension(audit): Extension<Audit>,
    Bearer(token): Bearer,
    JsonBody(request): JsonBody<SignRequest>,
) -> Result<Json<SignResponse>, ApiError> {
    let token_hash = session::hash_token(token.expose());
    let now = state.clock.now_unix();
    let cached = match state.sessions.get(&token_hash) {
        Some(cached) => cached,
        None => {
            let record = state
                .store
                .session(&token_hash)
                .await?
                .filter(|s| !s.ended)
                .ok_or_else(|| ApiError::InvalidToken("no live session for this token".into()))?;
            state.sessions.insert(record, now)
        }
    };
    let record = &cached.record;
    audit.record(|a| {
        a.issuer = Some(record.issuer.clone());
        a.subject = Some(record.subject.clone());
        a.policy = Some(record.policy.clone());
    });
    if record.expires_at <= now {
        return Err(ApiError::SessionExpired);
    }

    let texts = match (request.digest, request.digests) {
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
    // The log key is refused whatever a session row says: a store edit must not make signet a
    // checkpoint-signing oracle.
    let key = state.keys.signing_key(&request.key)?;
    if !record.keys.contains(&request.key) {
        return Err(ApiError::Forbidden(
            "this session may not use that key".into(),
        ));
    }
    // Authority is re-checked against the running config at every signature, so a policy
    // edit (and restart) takes a key away from live sessions too.
    let policy = state
        .config
        .policies
        .iter()
        .find(|p| p.name == record.policy)
        .ok_or_else(|| {
            ApiError::Forbidden(format!(
                "the session's policy {} no longer exists",
                record.policy
            ))
        })?;
    if !policy.keys.contains(&request.key) {
        return Err(ApiError::Forbidden(format!(
            "policy {} no longer grants key {}",
            record.policy, request.key
        )));
    }
    let algorithm = key.algorithm();
    let wanted = algorithm
        .digest_algorithm()
        .ok_or_else(|| ApiError::Forbidden(format!("key {} signs no digests", request.key)))?;
    let mut digests = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let digest = Digest::parse(text)
            .map_err(|e| ApiError::InvalidRequest(format!("digest {i}: {e}")))?;
        if digest.algorithm != wanted {
            return Err(ApiError::InvalidRequest(format!(
                "digest {i} is {} but key {} ({algorithm}) signs {} digests",
                digest.algorithm.name(),
                request.key,
                wanted.name()
            )));
        }
        digests.push(digest);
    }
    // A version deactivated by another process (a break-glass rotation) while this request
    // signed is refused by the append; the key's versions are then re-read and the request
    // signed again under the new active version (up to three attempts: two rotations in quick
    // succession can each catch one).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = sign_and_log(
            &state,
            &audit,
            key,
            &cached,
            &token_hash,
            &request.key,
            algorithm,
            &digests,
            now,
        )
        .await?;
        match attempt {
            Attempt::Done(response) => return Ok(response),
            Attempt::Stale(reason) if attempts < 3 => {
                tracing::info!(key = %request.key, reason = %reason, "the active version changed while signing; signing again");
                state.keys.reload(&state.store).await?;
            }
            Attempt::Stale(reason) => {
                return Err(ApiError::Conflict(format!(
                    "{reason}: the key was rotated while this request was signing; sign again"
                )));
            }
        }
    }
}

/// One signing attempt's end.
enum Attempt {
    /// Signed, logged, charged.
    Done(Json<SignResponse>),
    /// The version signed with was no longer active at its place in the log: nothing was
    /// logged or charged, and the signatures were dropped.
    Stale(String),
}

/// Signs `digests` with the active version and commits the entries with the quota charge.
#[allow(clippy::too_many_arguments)]
async fn sign_and_log(
    state: &AppState,
    audit: &Audit,
    key: &ManagedKey,
    cached: &CachedSession,
    token_hash: &str,
    key_name: &str,
    algorithm: Algorithm,
    digests: &[Digest],
    now: i64,
) -> Result<Attempt, ApiError> {
    let record = &cached.record;
    // Held until the entries are committed: a rotation cannot slip in between (see `gate`).
    let _gate = key.gate.read().await;
    let active = key
        .active()
        .ok_or_else(|| ApiError::Internal(format!("key {} has no active version", key_name)))?;

    let count = digests.len() as u64;
    // A pre-check on this replica's view of the count spares the HSM work that the store would
    // refuse anyway; the store's charge, made with the log entries, is what counts.
    let seen_used = cached.used.load(Ordering::Relaxed);
    if seen_used.saturating_add(count) > record.max_signatures {
        return Err(ApiError::QuotaExceeded {
            remaining: record.max_signatures.saturating_sub(seen_used),
        });
    }

    let digest_texts: Vec<String> = digests.iter().map(Digest::to_text).collect();
    let raw: Vec<Vec<u8>> = digests.iter().map(|d| d.bytes.clone()).collect();
    let backend_started = std::time::Instant::now();
    let outcome = key.backend.sign(&active.backend_ref, algorithm, raw).await;
    let backend_us = backend_started.elapsed().as_micros() as u64;
    audit.record(|a| a.backend_us = Some(backend_us));
    let signatures = match outcome {
        Ok(signatures) if signatures.len() == digest_texts.len() => signatures,
        Ok(_) => {
            return Err(ApiError::Internal(
                "backend returned the wrong number of signatures".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Each pair is encoded once, for both the log entry and the response.
    let signed: Vec<(String, String)> = digest_texts
        .into_iter()
        .zip(&signatures)
        .map(|(digest, signature)| (digest, STANDARD.encode(signature)))
        .collect();
    #[cfg(feature = "bench-unlogged")]
    if let Some(mode) = unlogged::mode() {
        let first_index = unlogged::charge(state, mode, cached, token_hash, count, now).await?;
        return Ok(Attempt::Done(respond(
            key_name,
            &active,
            algorithm,
            signed,
            first_index,
        )));
    }
    let claims = CanonicalClaims::new(&record.claims).map_err(LogError::from)?;
    let events: Vec<LogEvent> = signed
        .iter()
        .map(|(digest, signature)| {
            LogEvent::signature(
                record,
                &claims,
                key_name,
                active.version,
                &active.key_id,
                algorithm.as_str(),
                digest.clone(),
                signature.clone(),
                now,
            )
        })
        .collect();
    // Quota and log entries commit together, durably, before anything is returned: a signature
    // the quota refuses, or that could not be logged, never leaves the daemon.
    let charge = QuotaCharge {
        token_hash: token_hash.to_string(),
        count,
        now,
    };
    let first_index = match state
        .log
        .append_signatures(charge, key_name, active.version, &events)
        .await?
    {
        AppendOutcome::Appended {
            first_index,
            remaining,
        } => {
            if let Some(remaining) = remaining {
                cached.used.store(
                    record.max_signatures.saturating_sub(remaining),
                    Ordering::Relaxed,
                );
            }
            first_index
        }
        AppendOutcome::Refused(QuotaOutcome::Exhausted { remaining }) => {
            cached.used.store(
                record.max_signatures.saturating_sub(remaining),
                Ordering::Relaxed,
            );
            return Err(ApiError::QuotaExceeded { remaining });
        }
        AppendOutcome::Refused(QuotaOutcome::Expired) => return Err(ApiError::SessionExpired),
        AppendOutcome::Stale(reason) => return Ok(Attempt::Stale(reason)),
        AppendOutcome::Refused(_) => {
            state.sessions.remove(token_hash);
            return Err(ApiError::InvalidToken(
                "no live session for this token".into(),
            ));
        }
    };
    audit.record(|a| a.signatures = Some(signed.len()));
    Ok(Attempt::Done(respond(
        key_name,
        &active,
        algorithm,
        signed,
        first_index,
    )))
}

/// The 200 body: `signed` holds each digest's text and its signature in base64.
fn respond(
    key: &str,
    active: &ActiveVersion,
    algorithm: Algorithm,
    signed: Vec<(String, String)>,
    first_index: u64,
) -> Json<SignResponse> {
    let signatures = signed
        .into_iter()
        .enumerate()
        .map(|(i, (digest, signature))| SignatureOut {
            key: key.to_string(),
            key_version: active.version,
            key_id: active.key_id.clone(),
            algorithm: algorithm.as_str(),
            digest,
            signature,
            log_index: first_index + i as u64,
        })
        .collect();
    Json(SignResponse { signatures })
}

/// Benchmark builds only: signing without the log, to measure what the log costs.
#[cfg(feature = "bench-unlogged")]
pub(crate) mod unlogged {
    use super::*;
    use crate::session::CachedSession;

    /// What replaces the log append.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// The quota is charged in the store's group commit (durable), with no log entry.
        Quota,
        /// The quota is charged in memory only: no store write at all.
        Memory,
    }

    /// `SIGNET_BENCH_UNLOGGED=quota|memory`, read once.
    pub fn mode() -> Option<Mode> {
        static MODE: std::sync::OnceLock<Option<Mode>> = std::sync::OnceLock::new();
        *MODE.get_or_init(|| match std::env::var("SIGNET_BENCH_UNLOGGED").as_deref() {
            Ok("quota") => Some(Mode::Quota),
            Ok("memory") => Some(Mode::Memory),
            _ => None,
        })
    }

    pub async fn charge(
        state: &AppState,
        mode: Mode,
        cached: &CachedSession,
        token_hash: &str,
        count: u64,
        now: i64,
    ) -> Result<u64, ApiError> {
        match mode {
            Mode::Memory => {
                cached.used.fetch_add(count, Ordering::Relaxed);
                Ok(0)
            }
            Mode::Quota => {
                let charge = QuotaCharge {
                    token_hash: token_hash.to_string(),
                    count,
                    now,
                };
                match state.log.charge(charge).await? {
                    AppendOutcome::Appended { .. } => Ok(0),
                    _ => Err(ApiError::QuotaExceeded { remaining: 0 }),
                }
            }
        }
    }
}
