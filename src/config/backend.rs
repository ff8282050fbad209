//! `[backends.NAME]`: where private keys live, tagged by `type`. One file per backend type.
pub mod aws_kms;
pub mod gcp_kms;
pub mod pkcs11;
pub mod vault_transit;

use std::time::Duration;

use serde::Deserialize;

use super::{HumanDuration, Problems};

pub use aws_kms::AwsKmsConfig;
pub use gcp_kms::GcpKmsConfig;
pub use pkcs11::Pkcs11Config;
pub use vault_transit::VaultTransitConfig;

/// One backend, by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackendConfig {
    /// A PKCS#11 token (HSM; SoftHSM in tests).
    Pkcs11(Pkcs11Config),
    /// HashiCorp Vault / OpenBao Transit.
    VaultTransit(VaultTransitConfig),
    /// AWS KMS.
    AwsKms(AwsKmsConfig),
    /// Google Cloud KMS.
    GcpKms(GcpKmsConfig),
}

/// `kind` and `call_limits` for a backend type's settings (each has `timeout` and
/// `max_retries`; serde's `flatten` cannot share them under `deny_unknown_fields`).
macro_rules! common_settings {
    ($kind:literal) => {
        fn kind(&self) -> &'static str {
            $kind
        }

        fn call_limits(&self) -> super::CallLimits {
            super::CallLimits {
                timeout: self.timeout.clone(),
                max_retries: self.max_retries,
            }
        }
    };
}
use common_settings;

/// What every backend type's settings provide.
pub trait BackendSettings {
    /// The `type` tag.
    fn kind(&self) -> &'static str;
    /// The per-call timeout and retries every backend has.
    fn call_limits(&self) -> CallLimits;
    /// Adds each problem with these settings, under `field`.
    fn validate(&self, field: &str, problems: &mut Problems);
}

impl BackendConfig {
    /// The settings of this backend, whatever its type: the one match a new type extends.
    pub fn settings(&self) -> &dyn BackendSettings {
        match self {
            BackendConfig::Pkcs11(c) => c,
            BackendConfig::VaultTransit(c) => c,
            BackendConfig::AwsKms(c) => c,
            BackendConfig::GcpKms(c) => c,
        }
    }

    /// The `type` tag.
    pub fn kind(&self) -> &'static str {
        self.settings().kind()
    }

    /// The per-call timeout and retries.
    pub fn call_limits(&self) -> CallLimits {
        self.settings().call_limits()
    }

    pub(super) fn validate(&self, field: &str, problems: &mut Problems) {
        self.call_limits().validate(field, problems);
        self.settings().validate(field, problems);
    }
}

/// Per-call timeout and retries, common to all backends (`timeout`, `max_retries` in each).
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Longest one backend call may take.
    pub timeout: HumanDuration,
    /// Retries of a call that is safe to retry.
    pub max_retries: u32,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout: default_timeout(),
            max_retries: default_max_retries(),
        }
    }
}

pub(crate) fn default_timeout() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(10))
}

pub(crate) fn default_max_retries() -> u32 {
    2
}

impl CallLimits {
    fn validate(&self, field: &str, problems: &mut Problems) {
        self.timeout.check(
            &format!("{field}.timeout"),
            Duration::from_millis(10),
            Duration::from_secs(300),
            problems,
        );
        if self.max_retries > 10 {
            problems.push(format!("{field}.max_retries"), "must be at most 10");
        }
    }
}
