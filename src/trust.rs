//! The trust root (`signet-trust/v1`): what a verifier needs besides its pins. A verifier pins
//! only the log's origin and log key; every key version in the root comes with the log entries
//! that created, deactivated and revoked it, each proven included in the root's checkpoint,
//! which must verify under the pinned log key. A signature is then valid by log order: its entry
//! lies after its version's creation and before its deactivation, and (for a revoked version)
//! its time is before `compromised_since`. Routine retirement never invalidates a signature.
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::algorithm::Algorithm;
use crate::checkpoint::{Checkpoint, CheckpointError, verify_checkpoint};
use crate::clock::parse_rfc3339;
use crate::jwks::{self, Jwk};
use crate::note::VerifierKey;
use crate::receipt::LoggedSignature;

/// The format name.
pub const FORMAT: &str = "signet-trust/v1";

/// A witness a verifier demands cosignatures from (none until witnesses are configured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustWitness {
    /// The witness's name.
    pub name: String,
    /// Its verifier key.
    pub vkey: String,
}

/// A log entry with its inclusion proof against the root's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenLogEntry {
    /// The entry's index.
    pub index: u64,
    /// The entry's time (as the leaf says; informational, the leaf is what counts).
    pub time: String,
    /// The leaf bytes, base64.
    pub leaf_input: String,
    /// RFC 9162 inclusion proof, base64 hashes.
    pub inclusion_proof: Vec<String>,
}

/// One key version and the entries that tell its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustVersion {
    /// Version number.
    pub version: u32,
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// The public key.
    pub jwk: Jwk,
    /// `active`, `verify-only` or `retired` when the root was made (informational).
    pub state: String,
    /// The `key_created` or `key_rotated` entry that introduced it, with its public key.
    pub created: ProvenLogEntry,
    /// The `key_rotated` entry that replaced it as the signing version.
    pub deactivated: Option<ProvenLogEntry>,
    /// The `key_revoked` entry, if it was revoked.
    pub revoked: Option<ProvenLogEntry>,
}

/// One logical key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustKey {
    /// The key's name.
    pub name: String,
    /// JOSE algorithm.
    pub algorithm: String,
    /// Its versions, oldest first.
    pub versions: Vec<TrustVersion>,
}

/// The trust root document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// [`FORMAT`].
    pub format: String,
    /// The log's origin.
    pub origin: String,
    /// The log key's vkey.
    pub log_key: String,
    /// Witnesses whose cosignatures a checkpoint needs.
    pub witnesses: Vec<TrustWitness>,
    /// How many of them.
    pub witness_quorum: u32,
    /// The signed checkpoint every proof leads to.
    pub checkpoint: String,
    /// Every signing key.
    pub keys: Vec<TrustKey>,
}

/// Why a trust root, or a signature under it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Not a trust root of this format.
    #[error("the trust root is malformed: {0}")]
    Malformed(String),
    /// It is for another log, or names another log key than the pinned one.
    #[error("the trust root is for {found}, not the pinned log key {pinned}")]
    OtherLog {
        /// The pinned vkey.
        pinned: String,
        /// What the root names.
        found: String,
    },
    /// Its checkpoint does not verify under the pinned log key.
    #[error("the trust root's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Its checkpoint is older than the verifier accepts.
    #[error(
        "the trust root's checkpoint was signed {} ago, more than the {} allowed \
         (--max-trust-age): fetch a fresh one (signet trust)",
        humantime::format_duration(std::time::Duration::from_secs(*age_seconds)),
        humantime::format_duration(std::time::Duration::from_secs(*max_seconds))
    )]
    TooOld {
        /// Its age.
        age_seconds: u64,
        /// The maximum.
        max_seconds: u64,
    },
    /// An entry does not prove what the root says.
    #[error("the trust root's entry for {key} v{version} ({which}): {reason}")]
    BadEntry {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// `created`, `deactivated` or `revoked`.
        which: &'static str,
        /// Why.
        reason: String,
    },
    /// The signature's key version is not in the root.
    #[error(
        "key {key} v{version} (kid {kid}) is not in the trust root: it was made after the root, or \
         was never a key of this log; fetch a fresh trust root"
    )]
    UnknownVersion {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// The kid the signature names.
        kid: String,
    },
    /// The signature's entry is outside its version's active span in the log.
    #[error("log entry {index} is not within the active span of {key} v{version}: {reason}")]
    OutsideSpan {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// The signature's entry.
        index: u64,
        /// Which bound.
        reason: String,
    },
    /// The version was revoked as compromised before the signature's time.
    #[error(
        "{key} v{version} was revoked (log entry {revoked_index}): compromised since \
         {compromised_since}, and this signature was logged at {signed_at}"
    )]
    Revoked {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// The `key_revoked` entry.
        revoked_index: u64,
        /// RFC 3339.
        compromised_since: String,
        /// RFC 3339.
        signed_at: String,
    },
}

/// A key version whose life the root proved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenVersion {
    /// The public key.
    pub jwk: Jwk,
    /// Its creation entry.
    pub created_index: u64,
    /// The entry that ended its signing, if any.
    pub deactivated_index: Option<u64>,
    /// `(key_revoked entry, compromised_since Unix seconds)`.
    pub revoked: Option<(u64, i64)>,
}

/// A trust root whose every proof held under the pinned log key.
#[derive(Debug, Clone)]
pub struct VerifiedTrust {
    /// The pinned log key.
    pub log_key: VerifierKey,
    /// The root's checkpoint.
    pub checkpoint: Checkpoint,
    /// Versions by `(key, version)`.
    pub versions: BTreeMap<(String, u32), ProvenVersion>,
}

impl TrustRoot {
    /// Checks the root under the pinned `log_key` (its name is the pinned origin): the
    /// checkpoint's signature and age, and every entry's inclusion and content.
    pub fn verify(
        &self,
        log_key: &VerifierKey,
        now: i64,
        max_age_seconds: i64,
    ) -> Result<VerifiedTrust, TrustError> {
        if self.format != FORMAT {
            return Err(TrustError::Malformed(format!(
                "format {:?}, expected {FORMAT:?}",
                self.format
            )));
        }
        let named = VerifierKey::parse(&self.log_key)
            .map_err(|e| TrustError::Malformed(format!("log_key: {e}")))?;
        if named != *log_key || self.origin != log_key.name() {
            return Err(TrustError::OtherLog {
                pinned: log_key.to_vkey(),
                found: self.log_key.clone(),
            });
        }
        let checkpoint = verify_checkpoint(&self.checkpoint, log_key)?;
        let signed_at = checkpoint.time.ok_or_else(|| {
            TrustError::Malformed(
                "the checkpoint has no time line (made by an older signet)".into(),
            )
        })?;
        let age = now.saturating_sub(signed_at);
        if age > max_age_seconds {
            return Err(TrustError::TooOld {
                age_seconds: age.unsigned_abs(),
                max_seconds: max_age_seconds.unsigned_abs(),
            });
        }
        let mut versions = BTreeMap::new();
        for key in &self.keys {
            let mut previous: Option<(u32, Option<u64>)> = None;
            for version in &key.versions {
                let proven = prove_version(key, version, &checkpoint)?;
                // A version that a later one replaced must show its deactivation: a root that
                // left it out would make a rotated-out key look active.
                if let Some((number, None)) = previous {
                    return Err(TrustError::BadEntry {
                        key: key.name.clone(),
                        version: number,
                        which: "deactivated",
                        reason: format!("missing, although v{} follows it", version.version),
                    });
                }
                if previous.is_some_and(|(number, _)| number >= version.version) {
                    return Err(TrustError::Malformed(format!(
                        "key {}: versions are not in ascending order",
                        key.name
                    )));
                }
                previous = Some((version.version, proven.deactivated_index));
                versions.insert((key.name.clone(), version.version), proven);
            }
        }
        Ok(VerifiedTrust {
            log_key: log_key.clone(),
            checkpoint,
            versions,
        })
    }
}

impl VerifiedTrust {
    /// The key of a signature logged at `index` at `time` (Unix seconds) by `key` v`version`
    /// with `kid`, when that signature is valid by log order; the reason otherwise.
    pub fn signing_key(
        &self,
        key: &str,
        version: u32,
        kid: &str,
        index: u64,
        time: i64,
    ) -> Result<&Jwk, TrustError> {
        let unknown = || TrustError::UnknownVersion {
            key: key.to_string(),
            version,
            kid: kid.to_string(),
        };
        let proven = self
            .versions
            .get(&(key.to_string(), version))
            .ok_or_else(unknown)?;
        if proven.jwk.kid != kid {
            return Err(unknown());
        }
        let outside = |reason: String| TrustError::OutsideSpan {
            key: key.to_string(),
            version,
            index,
            reason,
        };
        if index <= proven.created_index {
            return Err(outside(format!(
                "it precedes the version's creation (entry {})",
                proven.created_index
            )));
        }
        if let Some(deactivated) = proven.deactivated_index
            && index >= deactivated
        {
            return Err(outside(format!(
                "it follows the version's deactivation (entry {deactivated})"
            )));
        }
        if let Some((revoked_index, compromised_since)) = proven.revoked
            && time >= compromised_since
        {
            return Err(TrustError::Revoked {
                key: key.to_string(),
                version,
                revoked_index,
                compromised_since: crate::clock::rfc3339(compromised_since),
                signed_at: crate::clock::rfc3339(time),
            });
        }
        Ok(&proven.jwk)
    }
}

/// Proves one version's entries against `checkpoint` and checks what they say.
fn prove_version(
    key: &TrustKey,
    version: &TrustVersion,
    checkpoint: &Checkpoint,
) -> Result<ProvenVersion, TrustError> {
    let bad = |which: &'static str, reason: String| TrustError::BadEntry {
        key: key.name.clone(),
        version: version.version,
        which,
        reason,
    };
    let (algorithm, spki) =
        jwks::spki_from_jwk(&version.jwk).map_err(|e| bad("created", format!("jwk: {e}")))?;
    if version.jwk.kid != version.kid
        || algorithm.as_str() != key.algorithm
        || algorithm == Algorithm::EdDSA
    {
        return Err(bad(
            "created",
            "the jwk's kid or algorithm differs from the version's".into(),
        ));
    }
    let created = prove_entry(&version.created, checkpoint).map_err(|r| bad("created", r))?;
    let kind = created["kind"].as_str().unwrap_or_default();
    if !matches!(kind, "key_created" | "key_rotated")
        || created["key"] != key.name.as_str()
        || created["key_version"] != version.version
        || created["key_id"] != version.kid.as_str()
        || created["algorithm"] != key.algorithm.as_str()
        || created["public_key"] != STANDARD.encode(&spki).as_str()
    {
        return Err(bad(
            "created",
            "the entry does not introduce this key version with this public key".into(),
        ));
    }
    let deactivated_index = match &version.deactivated {
        None => None,
        Some(entry) => {
            let event = prove_entry(entry, checkpoint).map_err(|r| bad("deactivated", r))?;
            if event["kind"] != "key_rotated"
                || event["key"] != key.name.as_str()
                || event["previous_version"] != version.version
                || entry.index <= version.created.index
            {
                return Err(bad(
                    "deactivated",
                    "the entry is not a later rotation away from this version".into(),
                ));
            }
            Some(entry.index)
        }
    };
    let revoked = match &version.revoked {
        None => None,
        Some(entry) => {
            let event = prove_entry(entry, checkpoint).map_err(|r| bad("revoked", r))?;
            let since = event["compromised_since"]
                .as_str()
                .and_then(parse_rfc3339)
                .ok_or_else(|| bad("revoked", "no compromised_since".into()))?;
            if event["kind"] != "key_revoked"
                || event["key"] != key.name.as_str()
                || event["key_version"] != version.version
                || event["key_id"] != version.kid.as_str()
            {
                return Err(bad(
                    "revoked",
                    "the entry does not revoke this key version".into(),
                ));
            }
            Some((entry.index, since))
        }
    };
    Ok(ProvenVersion {
        jwk: version.jwk.clone(),
        created_index: version.created.index,
        deactivated_index,
        revoked,
    })
}

/// Proves `entry` included in `checkpoint` (as a receipt's entry is); returns its event.
fn prove_entry(entry: &ProvenLogEntry, checkpoint: &Checkpoint) -> Result<Value, String> {
    LoggedSignature {
        log_index: entry.index,
        leaf_input: entry.leaf_input.clone(),
        inclusion_proof: entry.inclusion_proof.clone(),
        tlog_proof: None,
    }
    .prove(checkpoint)
    .map(|proven| proven.event)
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
