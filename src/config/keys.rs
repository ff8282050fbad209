//! `[[keys]]`: logical signing keys and the backend keys behind them.
use std::time::Duration;

use serde::Deserialize;

use super::{HumanDuration, Problems, is_identifier};
use crate::algorithm::Algorithm;

const DAY: u64 = 24 * 3600;

/// One logical key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key's name in requests, e.g. `model-signing`.
    pub name: String,
    /// The `[backends.NAME]` holding it.
    pub backend: String,
    /// `ES256`, `ES384`, `PS256` or `RS256`.
    pub algorithm: Algorithm,
    /// The backend's name for version 1 (PKCS#11 `CKA_LABEL`, ...); default: `name`.
    pub backend_key: Option<String>,
    /// RSA modulus size when signet creates the key (2048, 3072 or 4096).
    #[serde(default = "default_rsa_bits")]
    pub rsa_bits: u32,
    /// Scheduled rotation interval.
    pub rotation_period: Option<HumanDuration>,
    /// How long a rotated-out version stays published as verify-only.
    #[serde(default = "default_grace_period")]
    pub grace_period: HumanDuration,
}

fn default_rsa_bits() -> u32 {
    2048
}

fn default_grace_period() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(30 * DAY))
}

impl KeyConfig {
    /// The backend's name for version 1.
    pub fn backend_key(&self) -> &str {
        self.backend_key.as_deref().unwrap_or(&self.name)
    }

    pub(super) fn validate(&self, field: &str, problems: &mut Problems) {
        if !is_identifier(&self.name) {
            problems.push(
                format!("{field}.name"),
                "use letters, digits, '-', '_' and '.'",
            );
        }
        if let Some(label) = &self.backend_key
            && (label.is_empty() || label.len() > 256 || label.chars().any(char::is_control))
        {
            problems.push(
                format!("{field}.backend_key"),
                "must be 1 to 256 printable characters",
            );
        }
        if self.algorithm.is_rsa() && ![2048, 3072, 4096].contains(&self.rsa_bits) {
            problems.push(format!("{field}.rsa_bits"), "must be 2048, 3072 or 4096");
        }
        if let Some(period) = &self.rotation_period {
            period.check(
                &format!("{field}.rotation_period"),
                Duration::from_secs(10),
                Duration::from_secs(3650 * DAY),
                problems,
            );
        }
        self.grace_period.check(
            &format!("{field}.grace_period"),
            Duration::ZERO,
            Duration::from_secs(3650 * DAY),
            problems,
        );
    }
}
