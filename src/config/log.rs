//! `[log]`: the tamper-evident log's checkpoint origin and signing key.
use serde::Deserialize;

use std::time::Duration;

use super::{HumanDuration, Problems};

/// `[log]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The checkpoint origin line, e.g. `signet.example/log`.
    pub origin: String,
    /// The `[[keys]]` entry that signs checkpoints: EdDSA (Ed25519), signing nothing else.
    pub key: String,
    /// How often a new checkpoint is signed while entries arrive (default "1s").
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(1))
}

impl LogConfig {
    pub(super) fn validate(&self, key_names: &[&str], problems: &mut Problems) {
        self.checkpoint_interval.check(
            "log.checkpoint_interval",
            Duration::from_millis(100),
            Duration::from_secs(60),
            problems,
        );
        // C2SP tlog-checkpoint: the origin is one non-empty line, conventionally schema-less.
        if self.origin.is_empty()
            || self.origin.len() > 256
            || self
                .origin
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
            || self.origin.contains('+')
        {
            problems.push(
                "log.origin",
                "must be a non-empty single line without spaces or '+', like \"signet.example/log\"",
            );
        }
        if !key_names.contains(&self.key.as_str()) {
            problems.push(
                "log.key",
                format!("no key named {:?} in [[keys]]", self.key),
            );
        }
    }
}
