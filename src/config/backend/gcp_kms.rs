//! `type = "gcp_kms"`: Google Cloud KMS; Application Default Credentials unless a file is named.
use std::path::PathBuf;

use serde::Deserialize;

use super::BackendSettings;

use crate::config::HumanDuration;
use crate::config::{Problems, check_url};

/// GCP KMS settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpKmsConfig {
    /// `projects/P/locations/L/keyRings/R`.
    pub key_ring: String,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Service-account credentials file; default: Application Default Credentials.
    pub credentials_file: Option<PathBuf>,
    /// Longest one backend call may take (default "10s").
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a call that is safe to retry (default 2).
    #[serde(default = "super::default_max_retries")]
    pub max_retries: u32,
}

impl BackendSettings for GcpKmsConfig {
    super::common_settings!("gcp_kms");

    fn validate(&self, field: &str, problems: &mut Problems) {
        let parts: Vec<&str> = self.key_ring.split('/').collect();
        let shaped = parts.len() == 6
            && parts[0] == "projects"
            && parts[2] == "locations"
            && parts[4] == "keyRings"
            && parts.iter().all(|p| !p.is_empty());
        if !shaped {
            problems.push(
                format!("{field}.key_ring"),
                "must be projects/PROJECT/locations/LOCATION/keyRings/RING",
            );
        }
        if let Some(endpoint) = &self.endpoint {
            check_url(endpoint, &format!("{field}.endpoint"), problems);
        }
        if cfg!(not(feature = "gcp")) {
            problems.push(
                format!("{field}.type"),
                "this signet was built without the `gcp` cargo feature",
            );
        }
    }
}
