//! `[log]`: the tamper-evident log's checkpoint origin and signing key.
use serde::Deserialize;

use super::Problems;

/// `[log]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The checkpoint origin line, e.g. `signet.example/log`.
    pub origin: String,
    /// The `[[keys]]` entry that signs checkpoints.
    pub key: String,
}

impl LogConfig {
    pub(super) fn validate(&self, key_names: &[&str], problems: &mut Problems) {
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
