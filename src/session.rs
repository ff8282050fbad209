//! Signing sessions: an opaque random bearer token (256 bits; only its SHA-256 is stored), an
//! expiry, the keys it may use and a signature quota, granted within a policy's limits.
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::secret::Secret;
use crate::oidc::VerifiedClaims;
use crate::policy::Decision;
use crate::store::SessionRecord;

/// Every session token starts with this, so a leaked one is easy to recognise in scanners.
pub const TOKEN_PREFIX: &str = "sgt_";

/// What a caller may ask for when opening a session; all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Keys wanted; default: all the policy allows.
    pub keys: Option<Vec<String>>,
    /// Lifetime wanted; clamped to the policy's `max_ttl`.
    pub ttl_seconds: Option<u64>,
    /// Quota wanted; clamped to the policy's `max_signatures`.
    pub max_signatures: Option<u64>,
}

/// Why a session request is refused before any policy is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `ttl_seconds` or `max_signatures` is zero, or `keys` is empty.
    #[error("{0}")]
    InvalidRequest(&'static str),
}

impl SessionRequest {
    /// Checks the values that no policy can fix.
    pub fn check(&self) -> Result<(), SessionError> {
        if self.ttl_seconds == Some(0) {
            return Err(SessionError::InvalidRequest(
                "ttl_seconds must be at least 1",
            ));
        }
        if self.max_signatures == Some(0) {
            return Err(SessionError::InvalidRequest(
                "max_signatures must be at least 1",
            ));
        }
        if self.keys.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(SessionError::InvalidRequest(
                "keys, when given, must name at least one key",
            ));
        }
        Ok(())
    }
}

/// A fresh session token and the hash under which it is stored.
pub fn new_token() -> (Secret<String>, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&token);
    (Secret::new(token), hash)
}

/// The stored form of a token: SHA-256, hex. A 256-bit random token needs no salt or slow hash.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `text` could be a session token (so an ID token sent by mistake gets a clear error).
pub fn looks_like_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 43 && URL_SAFE_NO_PAD.decode(rest).is_ok())
}

/// Claims that name a build, kept for the log: GitHub Actions' and GitLab CI's, plus any claim a
/// policy matched on. Only short scalar values; never a token.
const BUILD_CLAIMS: &[&str] = &[
    "repository",
    "repository_id",
    "repository_owner",
    "ref",
    "ref_type",
    "sha",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "job_workflow_sha",
    "run_id",
    "run_number",
    "run_attempt",
    "environment",
    "event_name",
    "actor",
    "runner_environment",
    "project_path",
    "project_id",
    "namespace_path",
    "ref_path",
    "pipeline_id",
    "pipeline_source",
    "job_id",
    "user_login",
    "ci_config_ref_uri",
    "ci_config_sha",
];

/// Longest claim value kept for the log.
pub const MAX_CLAIM_LEN: usize = 512;

/// Why a session cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A claim the log keeps is longer than it keeps: refused whole, never cut, so that an
    /// identity check never runs on part of a claim.
    #[error("claim {name} is {len} bytes; signet logs claims of at most {MAX_CLAIM_LEN} bytes")]
    ClaimTooLong {
        /// The claim.
        name: String,
        /// Its length.
        len: usize,
    },
}

/// The claims kept for the log: the build claims and any a policy matched, scalar values only.
fn build_claims(
    caller: &VerifiedClaims,
    decision: &Decision,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, GrantError> {
    let mut kept = std::collections::BTreeMap::new();
    for (name, value) in &caller.claims {
        if !(BUILD_CLAIMS.contains(&name.as_str()) || decision.matched_claims.contains(name)) {
            continue;
        }
        match value {
            serde_json::Value::String(text) if text.len() > MAX_CLAIM_LEN => {
                return Err(GrantError::ClaimTooLong {
                    name: name.clone(),
                    len: text.len(),
                });
            }
            serde_json::Value::String(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Bool(_) => {
                kept.insert(name.clone(), value.clone());
            }
            _ => {}
        }
    }
    Ok(kept)
}

/// The session record for a caller, clamping the request to the decision's limits.
pub fn grant(
    token_hash: String,
    caller: &VerifiedClaims,
    decision: &Decision,
    request: &SessionRequest,
    now: i64,
) -> Result<SessionRecord, GrantError> {
    let ttl = request
        .ttl_seconds
        .map_or(decision.max_ttl, Duration::from_secs)
        .min(decision.max_ttl);
    let max_signatures = request
        .max_signatures
        .unwrap_or(decision.max_signatures)
        .min(decision.max_signatures);
    let mut session_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_id);
    Ok(SessionRecord {
        token_hash,
        session_id: hex::encode(session_id),
        issuer: caller.issuer.clone(),
        iss: caller.iss.clone(),
        claims: build_claims(caller, decision)?,
        subject: caller.subject.clone(),
        policy: decision.policy.clone(),
        keys: decision.keys.clone(),
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        max_signatures,
        used: 0,
        ended: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn tokens_are_256_bit_and_hashed() {
        let (token, hash) = new_token();
        assert!(looks_like_token(token.expose()));
        assert_eq!(hash, hash_token(token.expose()));
        assert_eq!(hash.len(), 64);
        let (other, _) = new_token();
        assert_ne!(token.expose(), other.expose());
    }

    #[test]
    fn grant_clamps_to_policy() {
        let caller = VerifiedClaims {
            issuer: "ci".into(),
            iss: "https://ci".into(),
            subject: "s".into(),
            claims: Default::default(),
        };
        let decision = Decision {
            policy: "p".into(),
            keys: vec!["k".into()],
            max_ttl: Duration::from_secs(600),
            max_signatures: 10,
            role: Role::Signer,
            matched_claims: vec![],
        };
        let request = SessionRequest {
            keys: None,
            ttl_seconds: Some(100_000),
            max_signatures: Some(1000),
        };
        let s = grant("h".into(), &caller, &decision, &request, 1000).expect("grant");
        assert_eq!(s.expires_at, 1600);
        assert_eq!(s.max_signatures, 10);
        let small = SessionRequest {
            keys: None,
            ttl_seconds: Some(5),
            max_signatures: Some(2),
        };
        let s = grant("h".into(), &caller, &decision, &small, 1000).expect("grant");
        assert_eq!((s.expires_at, s.max_signatures), (1005, 2));
    }
}

/// Recently used sessions, so the signing path can authorise a request without a store read.
/// Only fields that never change (subject, policy, keys, expiry) are trusted from here; whether
/// the session is still live and has quota is decided by the store, in the same transaction
/// that logs the signatures. `used` is this replica's last view of the count: a pre-check that
/// spares the HSM requests that are sure to be refused.
#[derive(Debug)]
pub struct SessionCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<CachedSession>>>,
    capacity: usize,
}

/// A cached session and the last count of its signatures seen here.
#[derive(Debug)]
pub struct CachedSession {
    /// The session as read from the store.
    pub record: SessionRecord,
    /// Signatures used, as of the last commit seen by this replica.
    pub used: std::sync::atomic::AtomicU64,
}

impl SessionCache {
    /// A cache holding at most `capacity` sessions.
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            entries: std::sync::RwLock::new(std::collections::HashMap::new()),
            capacity,
        }
    }

    /// The cached session with this token hash.
    pub fn get(&self, token_hash: &str) -> Option<std::sync::Arc<CachedSession>> {
        self.entries.read().ok()?.get(token_hash).cloned()
    }

    /// Caches a session; when full, drops expired ones first, and everything if still full.
    pub fn insert(&self, record: SessionRecord, now: i64) -> std::sync::Arc<CachedSession> {
        let record = std::sync::Arc::new(CachedSession {
            used: std::sync::atomic::AtomicU64::new(record.used),
            record,
        });
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.capacity {
                entries.retain(|_, s| s.record.expires_at > now);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(
                record.record.token_hash.clone(),
                std::sync::Arc::clone(&record),
            );
        }
        record
    }

    /// Drops sessions that expired by `now`; run on a schedule so the cache follows the live
    /// sessions instead of waiting until it is full.
    pub fn drop_expired(&self, now: i64) -> usize {
        let Ok(mut entries) = self.entries.write() else {
            return 0;
        };
        let before = entries.len();
        entries.retain(|_, s| s.record.expires_at > now);
        before - entries.len()
    }

    /// Forgets a session (ended here).
    pub fn remove(&self, token_hash: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(token_hash);
        }
    }
}
