//! `type = "vault_transit"`: HashiCorp Vault / OpenBao Transit.
use serde::Deserialize;

use super::BackendSettings;

use crate::config::HumanDuration;
use crate::config::{Problems, check_url};

/// Vault Transit settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultTransitConfig {
    /// Vault's address, e.g. `https://vault.example:8200`.
    pub address: String,
    /// The Transit mount path.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Environment variable holding the Vault token.
    pub token_env: String,
    /// Vault Enterprise namespace.
    pub namespace: Option<String>,
    /// Longest one backend call may take (default "10s").
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a call that is safe to retry (default 2).
    #[serde(default = "super::default_max_retries")]
    pub max_retries: u32,
}

fn default_mount() -> String {
    "transit".to_string()
}

impl BackendSettings for VaultTransitConfig {
    super::common_settings!("vault_transit");

    fn validate(&self, field: &str, problems: &mut Problems) {
        check_url(&self.address, &format!("{field}.address"), problems);
        if self.mount.is_empty() || self.mount.contains("..") {
            problems.push(format!("{field}.mount"), "must be a non-empty mount path");
        }
        if self.token_env.is_empty() {
            problems.push(
                format!("{field}.token_env"),
                "name the environment variable holding the token",
            );
        }
        if cfg!(not(feature = "vault")) {
            problems.push(
                format!("{field}.type"),
                "this signet was built without the `vault` cargo feature",
            );
        }
    }
}
