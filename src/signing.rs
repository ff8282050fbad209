//! The signing use case behind `POST /v1/sign`: a live session, the key it may use under the
//! running policy, digests of the key's hash; the backend signs; then the quota is charged and
//! the signatures are logged in one durable commit, before any is returned. A version
//! deactivated by another process while the request signed makes it sign again.
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::algorithm::{Algorithm, Digest};
use crate::app::AppState;
use crate::backend::BackendError;
use crate::keys::{KeyError, ManagedKey};
use crate::log::LogError;
use crate::log::event::{CanonicalClaims, LogEvent};
use crate::session::CachedSession;
use crate::store::{AppendOutcome, QuotaCharge, QuotaOutcome, StoreError};

/// One signature made, logged at `log_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDigest {
    /// The logical key.
    pub key: String,
    /// The version that signed.
    pub key_version: u32,
    /// Its JWK thumbprint.
    pub key_id: String,
    /// The signing algorithm.
    pub algorithm: Algorithm,
    /// The digest signed, as given (`sha256:<hex>`).
    pub digest: String,
    /// The signature, base64.
    pub signature: String,
    /// Its entry in the log.
    pub log_index: u64,
}

/// Why a request was not signed. Messages never contain the session token.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// No live session has this token.
    #[error("no live session for this token")]
    NoSession,
    /// The session has expired.
    #[error("the session has expired")]
    SessionExpired,
    /// The session or the running policy does not allow the key.
    #[error("{0}")]
    Forbidden(String),
    /// A digest is malformed or of another hash than the key signs.
    #[error("{0}")]
    InvalidDigest(String),
    /// The session's quota would be exceeded.
    #[error("the session's quota is spent ({remaining} left)")]
    QuotaExceeded {
        /// Signatures left.
        remaining: u64,
    },
    /// The key was rotated under the request more often than it signs again.
    #[error("{0}: the key was rotated while this request was signing; sign again")]
    RotatedWhileSigning(String),
    /// The key is unknown, or is the log key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The log could not take the entries.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fault of signet's own.
    #[error("{0}")]
    Internal(String),
}

/// What the request's audit line records as signing proceeds.
pub trait SigningAudit: Sync {
    /// Whose session it is.
    fn caller(&self, _issuer: &str, _subject: &str, _policy: &str) {}
    /// Time spent in the backend.
    fn backend_time(&self, _micros: u64) {}
    /// Signatures made.
    fn signed(&self, _count: usize) {}
}

/// Signs `digests_text` with `key_name` for the session whose token hashes to `token_hash`.
pub async fn sign(
    state: &AppState,
    token_hash: &str,
    key_name: &str,
    digests_text: &[String],
    audit: &dyn SigningAudit,
) -> Result<Vec<SignedDigest>, SignError> {
    let now = state.clock.now_unix();
    let cached = match state.sessions.get(token_hash) {
        Some(cached) => cached,
        None => {
            let record = state
                .store
                .session(token_hash)
                .await?
                .filter(|s| !s.ended)
                .ok_or(SignError::NoSession)?;
            state.sessions.insert(record, now)
        }
    };
    let record = &cached.record;
    audit.caller(&record.issuer, &record.subject, &record.policy);
    if record.expires_at <= now {
        return Err(SignError::SessionExpired);
    }

    // The log key is refused whatever a session row says: a store edit must not make signet a
    // checkpoint-signing oracle.
    let key = state.keys.signing_key(key_name)?;
    if !record.keys.iter().any(|k| k == key_name) {
        return Err(SignError::Forbidden(
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
            SignError::Forbidden(format!(
                "the session's policy {} no longer exists",
                record.policy
            ))
        })?;
    if !policy.keys.iter().any(|k| k == key_name) {
        return Err(SignError::Forbidden(format!(
            "policy {} no longer grants key {}",
            record.policy, key_name
        )));
    }
    let algorithm = key.algorithm();
    let wanted = algorithm
        .digest_algorithm()
        .ok_or_else(|| SignError::Forbidden(format!("key {} signs no digests", key_name)))?;
    let mut digests = Vec::with_capacity(digests_text.len());
    for (i, text) in digests_text.iter().enumerate() {
        let digest = Digest::parse(text)
            .map_err(|e| SignError::InvalidDigest(format!("digest {i}: {e}")))?;
        if digest.algorithm != wanted {
            return Err(SignError::InvalidDigest(format!(
                "digest {i} is {} but key {} ({algorithm}) signs {} digests",
                digest.algorithm.name(),
                key_name,
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
            state, audit, key, &cached, token_hash, key_name, algorithm, &digests, now,
        )
        .await?;
        match attempt {
            Attempt::Done(signed) => return Ok(signed),
            Attempt::Stale(reason) if attempts < 3 => {
                tracing::info!(key = %key_name, reason = %reason, "the active version changed while signing; signing again");
                state.keys.reload(&state.store).await?;
            }
            Attempt::Stale(reason) => {
                return Err(SignError::RotatedWhileSigning(reason));
            }
        }
    }
}

/// One signing attempt's end.
enum Attempt {
    /// Signed, logged, charged.
    Done(Vec<SignedDigest>),
    /// The version signed with was no longer active at its place in the log: nothing was
    /// logged or charged, and the signatures were dropped.
    Stale(String),
}

/// Signs `digests` with the active version and commits the entries with the quota charge.
#[allow(clippy::too_many_arguments)]
async fn sign_and_log(
    state: &AppState,
    audit: &dyn SigningAudit,
    key: &ManagedKey,
    cached: &CachedSession,
    token_hash: &str,
    key_name: &str,
    algorithm: Algorithm,
    digests: &[Digest],
    now: i64,
) -> Result<Attempt, SignError> {
    let record = &cached.record;
    // Held until the entries are committed: a rotation cannot slip in between (see `gate`).
    let _gate = key.gate.read().await;
    let active = key
        .active()
        .ok_or_else(|| SignError::Internal(format!("key {key_name} has no active version")))?;

    let count = digests.len() as u64;
    // A pre-check on this replica's view of the count spares the HSM work that the store would
    // refuse anyway; the store's charge, made with the log entries, is what counts.
    let seen_used = cached.used.load(Ordering::Relaxed);
    if seen_used.saturating_add(count) > record.max_signatures {
        return Err(SignError::QuotaExceeded {
            remaining: record.max_signatures.saturating_sub(seen_used),
        });
    }

    let digest_texts: Vec<String> = digests.iter().map(Digest::to_text).collect();
    let raw: Vec<Vec<u8>> = digests.iter().map(|d| d.bytes.clone()).collect();
    let backend_started = std::time::Instant::now();
    let outcome = key.backend.sign(&active.backend_ref, algorithm, raw).await;
    let backend_us = backend_started.elapsed().as_micros() as u64;
    audit.backend_time(backend_us);
    let signatures = match outcome {
        Ok(signatures) if signatures.len() == digest_texts.len() => signatures,
        Ok(_) => {
            return Err(SignError::Internal(
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
    let events = || -> Result<Vec<LogEvent>, LogError> {
        let claims = CanonicalClaims::new(&record.claims)?;
        Ok(signed
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
            .collect())
    };
    // Quota and log entries commit together, durably, before anything is returned: a signature
    // the quota refuses, or that could not be logged, never leaves the daemon.
    let charge = QuotaCharge {
        token_hash: token_hash.to_string(),
        count,
        now,
    };
    let first_index = match state
        .recorder
        .record(
            &state.log,
            charge,
            key_name,
            active.version,
            &events,
            &cached.used,
        )
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
            return Err(SignError::QuotaExceeded { remaining });
        }
        AppendOutcome::Refused(QuotaOutcome::Expired) => return Err(SignError::SessionExpired),
        AppendOutcome::Stale(reason) => return Ok(Attempt::Stale(reason)),
        AppendOutcome::Refused(_) => {
            state.sessions.remove(token_hash);
            return Err(SignError::NoSession);
        }
    };
    audit.signed(signed.len());
    Ok(Attempt::Done(
        signed
            .into_iter()
            .enumerate()
            .map(|(i, (digest, signature))| SignedDigest {
                key: key_name.to_string(),
                key_version: active.version,
                key_id: active.key_id.clone(),
                algorithm,
                digest,
                signature,
                log_index: first_index + i as u64,
            })
            .collect(),
    ))
}
