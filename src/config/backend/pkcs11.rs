//! `type = "pkcs11"`: a PKCS#11 module and token.
use std::path::PathBuf;

use serde::Deserialize;

use super::BackendSettings;

use crate::config::HumanDuration;
use crate::config::Problems;
use crate::config::secret::SecretSource;

/// PKCS#11 settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`libsofthsm2.so`, a vendor's library).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// Environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// File holding the user PIN (alternative to `pin_env`).
    pub pin_file: Option<PathBuf>,
    /// Logged-in sessions kept open; default: 4 per core, between 8 and 16.
    pub pool_size: Option<usize>,
    /// Longest one backend call may take (default "10s").
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a call that is safe to retry (default 2).
    #[serde(default = "super::default_max_retries")]
    pub max_retries: u32,
}

impl Pkcs11Config {
    /// Where the PIN comes from.
    pub fn pin_source(&self) -> Option<SecretSource> {
        match (&self.pin_env, &self.pin_file) {
            (Some(var), None) => Some(SecretSource::Env(var.clone())),
            (None, Some(path)) => Some(SecretSource::File(path.clone())),
            _ => None,
        }
    }
}

impl BackendSettings for Pkcs11Config {
    super::common_settings!("pkcs11");

    fn validate(&self, field: &str, problems: &mut Problems) {
        if !self.module.is_file() {
            problems.push(
                format!("{field}.module"),
                format!(
                    "{} does not exist (install the HSM's PKCS#11 library, e.g. softhsm2)",
                    self.module.display()
                ),
            );
        }
        if self.token_label.is_empty() || self.token_label.len() > 32 {
            problems.push(format!("{field}.token_label"), "must be 1 to 32 characters");
        }
        match self.pin_source() {
            None => problems.push(
                format!("{field}.pin_env"),
                "set exactly one of pin_env or pin_file (the PIN never goes in the config)",
            ),
            Some(source) => {
                if let Err(e) = source.read() {
                    problems.push(format!("{field}.pin_env"), e.to_string());
                }
            }
        }
        if let Some(size) = self.pool_size
            && (size == 0 || size > 64)
        {
            problems.push(format!("{field}.pool_size"), "must be between 1 and 64");
        }
    }
}
