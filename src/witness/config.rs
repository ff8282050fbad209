//! The witness's own config file (`signet witness serve --config FILE`):
//!
//! ```toml
//! [witness]
//! name = "witness.security.example"
//! listen = "127.0.0.1:8430"
//! key_file = "/etc/signet-witness/ed25519.pem"
//! state = "sqlite:///var/lib/signet-witness/state.db"
//! [[witness.logs]]
//! origin = "signet.example/log"
//! vkey = "signet.example/log+…+…"
//! ```
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cosignature::Cosigner;
use crate::note::VerifierKey;

/// Why the witness config was refused.
#[derive(Debug, thiserror::Error)]
pub enum WitnessConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid witness config.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    witness: WitnessSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessSection {
    name: String,
    listen: SocketAddr,
    key_file: PathBuf,
    state: String,
    #[serde(default)]
    logs: Vec<LogSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    origin: String,
    vkey: String,
}

/// A validated witness config.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The witness's name (its cosignatures' key name).
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its Ed25519 key, PKCS#8 PEM.
    pub key_file: PathBuf,
    /// Its SQLite state file.
    pub state: PathBuf,
    /// The logs it cosigns, by their keys (each key's name is the log's origin).
    pub logs: Vec<VerifierKey>,
}

impl WitnessConfig {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<WitnessConfig, WitnessConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WitnessConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| WitnessConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let section = file.witness;
        let state = section
            .state
            .strip_prefix("sqlite://")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| invalid("witness.state: must be sqlite://PATH".into()))?;
        if section.logs.is_empty() {
            return Err(invalid(
                "witness.logs: name at least one log (origin and vkey)".into(),
            ));
        }
        let mut logs = Vec::new();
        for (i, log) in section.logs.iter().enumerate() {
            let key = VerifierKey::parse(&log.vkey)
                .map_err(|e| invalid(format!("witness.logs[{i}].vkey: {e}")))?;
            if key.name() != log.origin {
                return Err(invalid(format!(
                    "witness.logs[{i}]: the vkey names {}, not the origin {}",
                    key.name(),
                    log.origin
                )));
            }
            logs.push(key);
        }
        Ok(WitnessConfig {
            name: section.name,
            listen: section.listen,
            key_file: section.key_file,
            state,
            logs,
        })
    }

    /// The witness's cosigner, from its key file.
    pub fn cosigner(&self) -> Result<Cosigner, WitnessConfigError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let invalid = |message: String| WitnessConfigError::Invalid {
            path: self.key_file.clone(),
            message,
        };
        let pem =
            std::fs::read_to_string(&self.key_file).map_err(|source| WitnessConfigError::Read {
                path: self.key_file.clone(),
                source,
            })?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| invalid("not an Ed25519 private key in PKCS#8 PEM".into()))?;
        Cosigner::new(&self.name, key).map_err(|e| invalid(format!("witness.name: {e}")))
    }
}
