//! The checkpointer's anchor: the last checkpoint this daemon signed, kept where an edit of the
//! database alone cannot move it. Before signing, the checkpointer proves the stored tree
//! consistent with the anchor, so a rewritten history is refused rather than signed.
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;

/// Why the anchor could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// The anchor's file could not be read or written.
    #[error("checkpoint anchor {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The anchor's file is not an anchor.
    #[error("checkpoint anchor {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A signed tree: its origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredTree {
    /// The log's origin.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// Where the last signed tree is kept.
pub trait Anchor: Send + Sync + std::fmt::Debug {
    /// The last tree recorded, if any.
    fn load(&self) -> Result<Option<AnchoredTree>, AnchorError>;
    /// Records `tree` durably before its checkpoint is published.
    fn record(&self, tree: &AnchoredTree) -> Result<(), AnchorError>;
}

/// An anchor in a small JSON file, replaced atomically (write, fsync, rename, fsync the folder).
#[derive(Debug, Clone)]
pub struct FileAnchor {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorFile {
    origin: String,
    size: u64,
    root: String,
}

impl FileAnchor {
    /// The anchor kept in `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileAnchor {
        FileAnchor { path: path.into() }
    }

    /// The anchor file beside an SQLite store: `<store file>.anchor`.
    pub fn beside(store_file: &Path) -> FileAnchor {
        let mut name = store_file.as_os_str().to_owned();
        name.push(".anchor");
        FileAnchor::new(PathBuf::from(name))
    }

    fn io(&self, reason: impl std::fmt::Display) -> AnchorError {
        AnchorError::Io {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> AnchorError {
        AnchorError::Malformed {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

impl Anchor for FileAnchor {
    fn load(&self) -> Result<Option<AnchoredTree>, AnchorError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let file: AnchorFile = serde_json::from_slice(&bytes).map_err(|e| self.malformed(e))?;
        let root: Hash = STANDARD
            .decode(&file.root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| self.malformed("root is not base64 of 32 bytes"))?;
        Ok(Some(AnchoredTree {
            origin: file.origin,
            size: file.size,
            root,
        }))
    }

    fn record(&self, tree: &AnchoredTree) -> Result<(), AnchorError> {
        let file = AnchorFile {
            origin: tree.origin.clone(),
            size: tree.size,
            root: STANDARD.encode(tree.root),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| self.io(e))?;
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut out = std::fs::File::create(&temporary).map_err(|e| self.io(e))?;
        out.write_all(&bytes).map_err(|e| self.io(e))?;
        out.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.io(e))?;
        // The rename is durable only once the folder is synced.
        let folder = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_loads_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let anchor = FileAnchor::beside(&dir.path().join("signet.db"));
        assert_eq!(anchor.load(), Ok(None));
        let tree = AnchoredTree {
            origin: "signet.test/log".into(),
            size: 12,
            root: [3; 32],
        };
        anchor.record(&tree).expect("recorded");
        assert_eq!(anchor.load(), Ok(Some(tree)));
        std::fs::write(dir.path().join("signet.db.anchor"), b"{\"size\":1}").expect("write");
        assert!(matches!(anchor.load(), Err(AnchorError::Malformed { .. })));
    }
}
