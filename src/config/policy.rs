//! `[[policies]]`: which identities (issuer + claims) may use which keys, for how long, how often.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{HumanDuration, Problems, is_identifier};

/// Largest session TTL a policy may grant.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest signature quota a policy may grant.
pub const MAX_SESSION_SIGNATURES: u64 = 1_000_000;

/// What a matching caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May open sessions and sign.
    #[default]
    Signer,
    /// May also rotate and retire the keys named.
    Admin,
}

/// One policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name recorded in sessions and the log.
    pub name: String,
    /// The `[[issuers]]` name whose tokens this policy considers.
    pub issuer: String,
    /// Claim name to pattern; all must match. Patterns are exact strings with `*` globs.
    pub claims: BTreeMap<String, String>,
    /// Keys a matching caller may use.
    pub keys: Vec<String>,
    /// Longest session this policy grants; longer requests are clamped.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: HumanDuration,
    /// Most signatures one session may make; larger requests are clamped.
    #[serde(default = "default_max_signatures")]
    pub max_signatures: u64,
    /// `signer` (default) or `admin`.
    #[serde(default)]
    pub role: Role,
}

fn default_max_ttl() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(15 * 60))
}

fn default_max_signatures() -> u64 {
    100
}

impl PolicyConfig {
    pub(super) fn validate(&self, field: &str, problems: &mut Problems) {
        if !is_identifier(&self.name) {
            problems.push(
                format!("{field}.name"),
                "use letters, digits, '-', '_' and '.'",
            );
        }
        // An issuer like GitHub Actions mints tokens for every repository in the world: a policy
        // without claims would let all of them sign.
        if self.claims.is_empty() {
            problems.push(
                format!("{field}.claims"),
                "constrain at least one claim (an empty set would admit every token of the issuer)",
            );
        }
        if self
            .claims
            .iter()
            .any(|(claim, pattern)| claim.is_empty() || pattern.is_empty())
        {
            problems.push(
                format!("{field}.claims"),
                "claim names and patterns must be non-empty",
            );
        }
        if !self.claims.is_empty() && self.claims.values().all(|p| p.chars().all(|c| c == '*')) {
            problems.push(
                format!("{field}.claims"),
                "every pattern is \"*\": this admits every token of the issuer",
            );
        }
        if self.keys.is_empty() {
            problems.push(format!("{field}.keys"), "list at least one key");
        }
        self.max_ttl.check(
            &format!("{field}.max_ttl"),
            Duration::from_secs(10),
            MAX_SESSION_TTL,
            problems,
        );
        if self.max_signatures == 0 || self.max_signatures > MAX_SESSION_SIGNATURES {
            problems.push(
                format!("{field}.max_signatures"),
                format!("must be between 1 and {MAX_SESSION_SIGNATURES}"),
            );
        }
    }
}
