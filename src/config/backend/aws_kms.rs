//! `type = "aws_kms"`: AWS KMS; credentials from the standard AWS chain.
use serde::Deserialize;

use super::BackendSettings;

use crate::config::HumanDuration;
use crate::config::{Problems, check_url};

/// AWS KMS settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKmsConfig {
    /// Region, e.g. `eu-west-1`.
    pub region: String,
    /// Endpoint override (LocalStack, VPC endpoints).
    pub endpoint: Option<String>,
    /// Longest one backend call may take (default "10s").
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a call that is safe to retry (default 2).
    #[serde(default = "super::default_max_retries")]
    pub max_retries: u32,
}

impl BackendSettings for AwsKmsConfig {
    super::common_settings!("aws_kms");

    fn validate(&self, field: &str, problems: &mut Problems) {
        if self.region.is_empty() {
            problems.push(format!("{field}.region"), "must be set, e.g. \"us-east-1\"");
        }
        if let Some(endpoint) = &self.endpoint {
            check_url(endpoint, &format!("{field}.endpoint"), problems);
        }
        if cfg!(not(feature = "aws")) {
            problems.push(
                format!("{field}.type"),
                "this signet was built without the `aws` cargo feature",
            );
        }
    }
}
