//! `[store]`: where sessions, quotas and key versions persist.
use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;

/// `[store]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative paths are relative to the working directory).
    pub url: String,
}

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite database file.
    Sqlite(PathBuf),
}

impl StoreConfig {
    /// The parsed location (valid after `validate`).
    pub fn location(&self) -> Option<StoreLocation> {
        let path = self.url.strip_prefix("sqlite://")?;
        if path.is_empty() {
            return None;
        }
        Some(StoreLocation::Sqlite(PathBuf::from(path)))
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            problems.push(
                "store.url",
                "the PostgreSQL store is not built yet; use sqlite://PATH for now",
            );
        } else if self.location().is_none() {
            problems.push("store.url", "must be sqlite://PATH");
        }
    }
}
