//! Log events: what each leaf records. A leaf is the RFC 8785 canonical JSON of one event. Events
//! name the caller (issuer, subject, policy, build claims), the key and the digest; never a
//! token or a token's hash (sessions are named by a random `session_id`).
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::canonical::CanonicalError;
use crate::clock::rfc3339;
use crate::store::{KeyVersionRecord, SessionRecord};

/// One log event. Absent fields are omitted from the leaf.
///
/// The fields are declared in RFC 8785 member order (byte order of their ASCII names), so
/// serde_json writes a leaf directly in canonical form, without building a `Value` first; the
/// only free-form part, `claims`, is written canonically by `canonical_claims`. A test checks
/// the result against the general canonicalizer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEvent {
    /// Who made a key change when it was not an OIDC caller: `scheduler` or `break-glass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// JOSE algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// The backend holding the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Claims naming the build (repository, ref, workflow, run ids, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<CanonicalClaims>,
    /// From when a revoked key version is taken to be compromised (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compromised_since: Option<String>,
    /// `sha256:<hex>` that was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When a session expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The caller's `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The logical key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The version's RFC 7638 thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// Keys a session may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// `session_created`, `session_ended`, `signature`, `key_created`, ...
    pub kind: &'static str,
    /// A session's quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_signatures: Option<u64>,
    /// The policy that granted the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its kid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_id: Option<String>,
    /// The version a rotation replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<u32>,
    /// SPKI DER of a new key version, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Why a key change happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the replaced version retires (leaves the JWKS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<String>,
    /// Which sessions an administrator ended: `subject=…`, `policy=…` or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The session's random id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// How many sessions an administrator ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
    /// The signature, base64, as returned to the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The caller's `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 3339, UTC, seconds.
    pub time: String,
}

/// The most bytes of canonical JSON a session's claims may take: every entry naming the session
/// must stay well within a log entry's 65,535 bytes (CI providers' tokens carry about 2 KiB).
pub const MAX_CLAIMS_BYTES: usize = 8 * 1024;

/// A session's claims in canonical form, made once and written as raw JSON into every leaf
/// that names them (a batch's signatures share one).
#[derive(Debug, Clone)]
pub struct CanonicalClaims(Arc<RawValue>);

impl CanonicalClaims {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether it is empty (never: `{}` at least).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// The canonical form of `claims`.
    pub fn new(claims: &BTreeMap<String, Value>) -> Result<Self, CanonicalError> {
        let text = crate::canonical::canonical_object(claims)?;
        let raw = RawValue::from_string(text).map_err(|e| CanonicalError::Number(e.to_string()))?;
        Ok(CanonicalClaims(Arc::from(raw)))
    }
}

impl PartialEq for CanonicalClaims {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for CanonicalClaims {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Who asked for a key change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An OIDC caller of an admin policy.
    Caller {
        /// `iss`.
        issuer: String,
        /// `sub`.
        subject: String,
        /// The admin policy.
        policy: String,
    },
    /// signet itself: a scheduled rotation or retirement, or a recovery at start-up.
    Scheduler,
    /// `signet keys … --config`, on the store and backends directly.
    BreakGlass,
}

impl LogEvent {
    /// The leaf: this event's RFC 8785 canonical JSON.
    pub fn to_leaf(&self) -> Result<Vec<u8>, CanonicalError> {
        serde_json::to_vec(self).map_err(|e| CanonicalError::Number(e.to_string()))
    }

    fn new(kind: &'static str, now: i64) -> Self {
        LogEvent {
            kind,
            time: rfc3339(now),
            issuer: None,
            subject: None,
            policy: None,
            claims: None,
            compromised_since: None,
            scope: None,
            session_id: None,
            sessions: None,
            keys: None,
            expires_at: None,
            max_signatures: None,
            key: None,
            key_version: None,
            key_id: None,
            algorithm: None,
            backend: None,
            public_key: None,
            digest: None,
            signature: None,
            previous_version: None,
            previous_key_id: None,
            retire_at: None,
            actor: None,
            reason: None,
        }
    }

    fn by(mut self, actor: &Actor) -> Self {
        match actor {
            Actor::Caller {
                issuer,
                subject,
                policy,
            } => {
                self.issuer = Some(issuer.clone());
                self.subject = Some(subject.clone());
                self.policy = Some(policy.clone());
            }
            Actor::Scheduler => self.actor = Some("scheduler".into()),
            Actor::BreakGlass => self.actor = Some("break-glass".into()),
        }
        self
    }

    /// A new version became active; the previous one is verify-only until `retire_at`.
    pub fn key_rotated(
        new: &KeyVersionRecord,
        previous: Option<&KeyVersionRecord>,
        retire_at: i64,
        actor: &Actor,
        reason: &str,
        now: i64,
    ) -> Self {
        let mut event = LogEvent::key_created(new, now);
        event.kind = "key_rotated";
        event.time = rfc3339(now);
        event.previous_version = previous.map(|p| p.version);
        event.previous_key_id = previous.map(|p| p.key_id.clone());
        event.retire_at = previous.map(|_| rfc3339(retire_at));
        event.reason = Some(reason.to_string());
        event.by(actor)
    }

    /// A version left the JWKS for good.
    pub fn key_retired(version: &KeyVersionRecord, actor: &Actor, reason: &str, now: i64) -> Self {
        let mut event = LogEvent::new("key_retired", now).by(actor);
        event.key = Some(version.key.clone());
        event.key_version = Some(version.version);
        event.key_id = Some(version.key_id.clone());
        event.algorithm = Some(version.algorithm.as_str().to_string());
        event.reason = Some(reason.to_string());
        event
    }

    /// A version was revoked: signatures logged from `compromised_since` on are invalid.
    pub fn key_revoked(
        version: &KeyVersionRecord,
        compromised_since: i64,
        actor: &Actor,
        reason: &str,
        now: i64,
    ) -> Self {
        let mut event = LogEvent::key_retired(version, actor, reason, now);
        event.kind = "key_revoked";
        event.compromised_since = Some(rfc3339(compromised_since));
        event
    }

    /// Live sessions were ended by an administrator (`scope` says which).
    pub fn sessions_revoked(
        scope: &str,
        sessions: u64,
        actor: &Actor,
        reason: &str,
        now: i64,
    ) -> Self {
        let mut event = LogEvent::new("sessions_revoked", now).by(actor);
        event.scope = Some(scope.to_string());
        event.sessions = Some(sessions);
        event.reason = Some(reason.to_string());
        event
    }

    /// A rotation interrupted before its backend key was recorded was undone.
    pub fn key_rotation_rolled_back(key: &str, version: u32, reason: &str, now: i64) -> Self {
        let mut event = LogEvent::new("key_rotation_rolled_back", now).by(&Actor::Scheduler);
        event.key = Some(key.to_string());
        event.key_version = Some(version);
        event.reason = Some(reason.to_string());
        event
    }

    fn with_caller(mut self, session: &SessionRecord) -> Self {
        self.issuer = Some(session.iss.clone());
        self.subject = Some(session.subject.clone());
        self.policy = Some(session.policy.clone());
        self.session_id = Some(session.session_id.clone());
        self
    }

    /// A session was opened.
    pub fn session_created(session: &SessionRecord, now: i64) -> Result<Self, CanonicalError> {
        let mut event = LogEvent::new("session_created", now).with_caller(session);
        event.claims = Some(CanonicalClaims::new(&session.claims)?);
        event.keys = Some(session.keys.clone());
        event.expires_at = Some(rfc3339(session.expires_at));
        event.max_signatures = Some(session.max_signatures);
        Ok(event)
    }

    /// A session was ended by its holder.
    pub fn session_ended(session: &SessionRecord, now: i64) -> Self {
        LogEvent::new("session_ended", now).with_caller(session)
    }

    /// A digest was signed: `digest` as `sha256:<hex>`, `signature` in base64, as returned.
    #[allow(clippy::too_many_arguments)]
    pub fn signature(
        session: &SessionRecord,
        claims: &CanonicalClaims,
        key: &str,
        version: u32,
        key_id: &str,
        algorithm: &str,
        digest: String,
        signature: String,
        now: i64,
    ) -> Self {
        let mut event = LogEvent::new("signature", now).with_caller(session);
        event.claims = Some(claims.clone());
        event.key = Some(key.to_string());
        event.key_version = Some(version);
        event.key_id = Some(key_id.to_string());
        event.algorithm = Some(algorithm.to_string());
        event.digest = Some(digest);
        event.signature = Some(signature);
        event
    }

    /// A key version was recorded (found in or created inside its backend).
    pub fn key_created(version: &KeyVersionRecord, now: i64) -> Self {
        let mut event = LogEvent::new("key_created", now);
        event.key = Some(version.key.clone());
        event.key_version = Some(version.version);
        event.key_id = Some(version.key_id.clone());
        event.algorithm = Some(version.algorithm.as_str().to_string());
        event.backend = Some(version.backend.clone());
        event.public_key = Some(STANDARD.encode(&version.public_key_spki));
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::to_canonical_vec;
    use serde_json::json;

    fn session() -> SessionRecord {
        let claims = json!({
            "repository": "acme/models",
            "run_attempt": 1.0,
            "ratio": 1.5e-5,
            "\u{1f600}": "before U+FB33 in UTF-16 order, after it in UTF-8",
            "\u{fb33}": "before the emoji",
            "nested": {"b": [true, null, -2], "a": "tab\tquote\"slash\\ctl\u{1}"},
            "ünïcødé": "✓",
        });
        SessionRecord {
            token_hash: "h".into(),
            session_id: "0123abcd".into(),
            issuer: "ci".into(),
            iss: "https://ci.example".into(),
            claims: serde_json::from_value(claims).expect("claims"),
            subject: "repo:acme/models:ref:refs/heads/main".into(),
            policy: "release".into(),
            keys: vec!["model-signing".into(), "other".into()],
            created_at: 1_700_000_000,
            expires_at: 1_700_000_900,
            max_signatures: 100,
            used: 0,
            ended: false,
        }
    }

    /// Leaves are written straight from the struct; they must be exactly what the general RFC
    /// 8785 canonicalizer makes of the same event (member order, escapes, numbers in claims).
    #[test]
    fn leaves_are_the_canonical_form_of_every_event() {
        let session = session();
        let claims = CanonicalClaims::new(&session.claims).expect("claims");
        let mut every_field = LogEvent::signature(
            &session,
            &claims,
            "model-signing",
            7,
            "kid-7",
            "ES256",
            format!("sha256:{}", "ab".repeat(32)),
            "AQID".into(),
            1_700_000_100,
        );
        every_field.actor = Some("scheduler".into());
        every_field.backend = Some("hsm".into());
        every_field.expires_at = Some(rfc3339(1_700_000_900));
        every_field.keys = Some(session.keys.clone());
        every_field.max_signatures = Some(100);
        every_field.public_key = Some("MFkw".into());
        every_field.previous_key_id = Some("kid-6".into());
        every_field.previous_version = Some(6);
        every_field.reason = Some("line\nbreak".into());
        every_field.retire_at = Some(rfc3339(1_700_086_400));
        every_field.compromised_since = Some(rfc3339(1_700_000_050));
        every_field.scope = Some("subject=repo:acme/models".into());
        every_field.sessions = Some(3);
        let events = [
            every_field,
            LogEvent::session_created(&session, 1_700_000_000).expect("claims"),
            LogEvent::session_ended(&session, 1_700_000_200),
            LogEvent::key_rotation_rolled_back("model-signing", 8, "failed", 1_700_000_300),
        ];
        for event in &events {
            let direct = event.to_leaf().expect("leaf");
            let general = to_canonical_vec(event).expect("canonical");
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&general)
            );
        }
        let text = String::from_utf8(events[0].to_leaf().expect("leaf")).expect("UTF-8");
        // JCS numbers and UTF-16 member order inside the claims.
        assert!(text.contains(r#""ratio":0.000015"#), "{text}");
        assert!(text.contains(r#""run_attempt":1,"#), "{text}");
        assert!(
            text.find('\u{fb33}') > text.find('\u{1f600}'),
            "U+1F600 sorts before U+FB33 as UTF-16: {text}"
        );
    }
}
