//! `[[issuers]]`: OIDC issuers whose ID tokens signet accepts.
use std::time::Duration;

use serde::Deserialize;

use super::{HumanDuration, Problems, check_url, is_identifier};

/// One trusted OIDC issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Name used by policies.
    pub name: String,
    /// The exact `iss` value; discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one of them.
    pub audiences: Vec<String>,
    /// Overrides the discovered `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// Least time between two JWKS fetches triggered by an unknown `kid`.
    #[serde(default = "default_refetch_cooldown")]
    pub jwks_refetch_cooldown: HumanDuration,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age: HumanDuration,
}

fn default_refetch_cooldown() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(60))
}

fn default_jwks_max_age() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(3600))
}

impl IssuerConfig {
    pub(super) fn validate(&self, field: &str, problems: &mut Problems) {
        if !is_identifier(&self.name) {
            problems.push(
                format!("{field}.name"),
                "use letters, digits, '-', '_' and '.'",
            );
        }
        check_url(&self.issuer, &format!("{field}.issuer"), problems);
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.is_empty()) {
            problems.push(
                format!("{field}.audiences"),
                "list at least one non-empty audience",
            );
        }
        if let Some(uri) = &self.jwks_uri {
            check_url(uri, &format!("{field}.jwks_uri"), problems);
        }
        self.jwks_refetch_cooldown.check(
            &format!("{field}.jwks_refetch_cooldown"),
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
            problems,
        );
        self.jwks_max_age.check(
            &format!("{field}.jwks_max_age"),
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
            problems,
        );
    }
}
