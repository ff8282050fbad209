//! Configuration: TOML in the shape of API.md, strict (`deny_unknown_fields`), validated at start-up
//! with every problem listed by file and field. Secrets come from the environment or files.
pub mod backend;
pub mod issuer;
pub mod keys;
pub mod log;
pub mod policy;
pub mod secret;
pub mod server;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::algorithm::Algorithm;

pub use backend::BackendConfig;
pub use issuer::IssuerConfig;
pub use keys::KeyConfig;
pub use log::LogConfig;
pub use policy::{PolicyConfig, Role};
pub use server::ServerConfig;
pub use store::StoreConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listener and request limits.
    pub server: ServerConfig,
    /// `[store]`: where sessions and key versions persist.
    pub store: StoreConfig,
    /// `[log]`: the tamper-evident log's origin and checkpoint key.
    pub log: LogConfig,
    /// `[[issuers]]`: trusted OIDC issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// `[backends.NAME]`: where private keys live.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// `[[keys]]`: logical signing keys.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// `[[policies]]`: which identities may use which keys.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

/// One problem found in a configuration: the field (dotted path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path such as `keys[0].backend`.
    pub field: String,
    /// What is wrong, without any secret value.
    pub message: String,
}

/// Collects problems so that one run reports all of them.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem with `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The problems recorded so far.
    pub fn list(&self) -> &[Problem] {
        &self.0
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed but some values are wrong.
    #[error("{path}: {} problem(s):{}", problems.len(), format_problems(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n  {}: {}", p.field, p.message))
        .collect()
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let problems = config.validate();
        if problems.list().is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: problems.0,
            })
        }
    }

    /// Checks every section and the references between them; returns every problem.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::default();
        self.server.validate(&mut problems);
        self.store.validate(&mut problems);

        let mut issuer_names = Vec::new();
        for (i, issuer) in self.issuers.iter().enumerate() {
            let field = format!("issuers[{i}]");
            issuer.validate(&field, &mut problems);
            if issuer_names.contains(&issuer.name.as_str()) {
                problems.push(
                    format!("{field}.name"),
                    format!("duplicate issuer name {:?}", issuer.name),
                );
            }
            issuer_names.push(&issuer.name);
        }

        for (name, backend) in &self.backends {
            let field = format!("backends.{name}");
            if !is_identifier(name) {
                problems.push(
                    &field,
                    "backend names use letters, digits, '-', '_' and '.'",
                );
            }
            backend.validate(&field, &mut problems);
        }

        let mut key_names = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let field = format!("keys[{i}]");
            key.validate(&field, &mut problems);
            if key_names.contains(&key.name.as_str()) {
                problems.push(
                    format!("{field}.name"),
                    format!("duplicate key name {:?}", key.name),
                );
            }
            key_names.push(&key.name);
            if !self.backends.contains_key(&key.backend) {
                problems.push(
                    format!("{field}.backend"),
                    format!("no backend named {:?} in [backends]", key.backend),
                );
            }
        }

        self.log.validate(&key_names, &mut problems);
        self.validate_log_key(&mut problems);

        let mut policy_names = Vec::new();
        for (i, policy) in self.policies.iter().enumerate() {
            let field = format!("policies[{i}]");
            policy.validate(&field, &mut problems);
            if policy_names.contains(&policy.name.as_str()) {
                problems.push(
                    format!("{field}.name"),
                    format!("duplicate policy name {:?}", policy.name),
                );
            }
            policy_names.push(&policy.name);
            if !issuer_names.contains(&policy.issuer.as_str()) {
                problems.push(
                    format!("{field}.issuer"),
                    format!("no issuer named {:?} in [[issuers]]", policy.issuer),
                );
            }
            for (k, key) in policy.keys.iter().enumerate() {
                if !key_names.contains(&key.as_str()) {
                    problems.push(
                        format!("{field}.keys[{k}]"),
                        format!("no key named {key:?} in [[keys]]"),
                    );
                } else if *key == self.log.key {
                    // A caller who could sign with the log key could forge checkpoints.
                    problems.push(
                        format!("{field}.keys[{k}]"),
                        format!("{key:?} is the log's checkpoint key ([log] key); no policy may grant it"),
                    );
                }
            }
        }
        problems
    }

    /// The log key is a fixed role: Ed25519, never rotated, in a backend that can hold it, and
    /// sharing no backend key with any other key (a caller who could sign with its material
    /// could forge checkpoints).
    fn validate_log_key(&self, problems: &mut Problems) {
        for (i, key) in self.keys.iter().enumerate() {
            let field = format!("keys[{i}]");
            let is_log_key = key.name == self.log.key;
            if is_log_key && key.algorithm != Algorithm::EdDSA {
                problems.push(
                    format!("{field}.algorithm"),
                    format!(
                        "{:?} is the log key ([log] key): it must be \"EdDSA\" (checkpoints are \
                         Ed25519 C2SP signed notes)",
                        key.name
                    ),
                );
            }
            if !is_log_key && key.algorithm == Algorithm::EdDSA {
                problems.push(
                    format!("{field}.algorithm"),
                    "\"EdDSA\" is for the log key ([log] key) only",
                );
            }
            if !is_log_key {
                continue;
            }
            if key.rotation_period.is_some() {
                problems.push(
                    format!("{field}.rotation_period"),
                    "the log key is never rotated (a new log key is a new log with a new origin)",
                );
            }
            if let Some(backend) = self.backends.get(&key.backend)
                && backend.kind() == "aws_kms"
            {
                problems.push(
                    format!("{field}.backend"),
                    "the log key cannot be kept in AWS KMS here (LocalStack cannot create Ed25519 \
                     keys, so the path is untested): put it in a pkcs11, vault_transit or gcp_kms \
                     backend",
                );
            }
            for (j, other) in self.keys.iter().enumerate() {
                if j != i
                    && other.backend == key.backend
                    && other.backend_key() == key.backend_key()
                {
                    problems.push(
                        format!("keys[{j}].backend_key"),
                        format!(
                            "{:?} would share backend key {:?} with the log key {:?}",
                            other.name,
                            key.backend_key(),
                            key.name
                        ),
                    );
                }
            }
        }
    }

    /// The key configuration named `name`.
    pub fn key(&self, name: &str) -> Option<&KeyConfig> {
        self.keys.iter().find(|k| k.name == name)
    }
}

/// Names of issuers, backends, keys and policies: a safe, printable identifier.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A duration written as text (`"15m"`, `"90d"`, `"1h 30m"`). Parsing problems are reported by
/// `validate`, alongside every other problem, rather than stopping at the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    raw: String,
    parsed: Option<Duration>,
}

impl HumanDuration {
    /// A duration known to be valid (for defaults).
    pub fn from_duration(duration: Duration) -> Self {
        HumanDuration {
            raw: humantime::format_duration(duration).to_string(),
            parsed: Some(duration),
        }
    }

    /// The parsed value. `Config::load` refuses unparseable durations, so after loading this is
    /// the configured value; an unvalidated bad value reads as zero.
    pub fn get(&self) -> Duration {
        self.parsed.unwrap_or(Duration::ZERO)
    }

    /// Records a problem if the text did not parse or lies outside `min..=max`.
    pub fn check(&self, field: &str, min: Duration, max: Duration, problems: &mut Problems) {
        match self.parsed {
            None => problems.push(
                field,
                format!(
                    "{:?} is not a duration (examples: \"30s\", \"15m\", \"90d\")",
                    self.raw
                ),
            ),
            Some(d) if d < min || d > max => problems.push(
                field,
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            ),
            Some(_) => {}
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let parsed = humantime::parse_duration(raw.trim()).ok();
        Ok(HumanDuration { raw, parsed })
    }
}

/// Whether `host` names the loopback interface (plain HTTP is allowed there only).
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => *name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks that `text` is an absolute `https://` URL, or `http://` on loopback.
pub fn check_url(text: &str, field: &str, problems: &mut Problems) {
    match url::Url::parse(text) {
        Err(e) => problems.push(field, format!("not a URL: {e}")),
        Ok(url) => match (url.scheme(), url.host()) {
            ("https", Some(_)) => {}
            ("http", Some(host)) if is_loopback_host(&host) => {}
            ("http", Some(_)) => {
                problems.push(field, "must be https:// (http:// only on loopback)")
            }
            _ => problems.push(field, "must be an https:// URL"),
        },
    }
}

#[cfg(test)]
mod tests;
