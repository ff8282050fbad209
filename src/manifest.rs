//! The model manifest: every file's path, size and SHA-256, with the build's provenance (git
//! commit, dataset, training image, parameters), as RFC 8785 canonical JSON.
//!
//! The walk is deterministic: relative `/`-separated paths in byte order. `.git` and signet's
//! own output files are left out; symlinks are followed only to files inside the model
//! directory. Files are hashed in parallel, two per core with their rounds interleaved (the
//! `sha256-lanes` crate), through memory-mapped windows, so memory stays flat whatever the
//! model's size. The walk is in `walk`, the hashing engine in `hash`.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::algorithm::Digest;
use crate::canonical::{CanonicalError, to_canonical_vec};

mod hash;
mod walk;

use hash::hash_files;
use walk::list_files;

/// The manifest format's version.
pub const MANIFEST_VERSION: u32 = 1;

/// Files signet writes beside a model; never part of its manifest.
pub const OUTPUT_FILES: &[&str] = &[
    "manifest.json",
    "manifest.json.sig",
    "model.sig",
    "signet-receipt.json",
];

/// One file of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path with `/` separators.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// The dataset a model was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Its identifier (name, URI, registry id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its content digest, `sha256:<hex>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The tool that made the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// `signet`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub manifest_version: u32,
    /// Every file, in path order.
    pub files: Vec<FileEntry>,
    /// The training code's git commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The training data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Dataset>,
    /// The training image, by digest (`sha256:<hex>` or `name@sha256:<hex>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_image: Option<String>,
    /// Free parameters (hyper-parameters, run names).
    pub parameters: BTreeMap<String, String>,
    /// The tool that made it.
    pub tool: Tool,
}

/// What the caller states about the build.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Git commit; `None` means "use the repository's HEAD if the work tree is clean".
    pub git_commit: Option<String>,
    /// Dataset id.
    pub dataset_id: Option<String>,
    /// Dataset digest.
    pub dataset_digest: Option<String>,
    /// Training image digest.
    pub training_image: Option<String>,
    /// Free parameters.
    pub parameters: BTreeMap<String, String>,
}

/// Why a manifest could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read; nothing is passed over silently.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A symlink points outside the model directory (or nowhere).
    #[error("{path} is a symlink that leaves the model directory; refusing to follow it")]
    SymlinkEscapes {
        /// The link.
        path: PathBuf,
    },
    /// A symlink to a directory (not followed, to keep the walk finite and predictable).
    #[error("{path} is a symlink to a directory; replace it with the directory or a file link")]
    SymlinkedDirectory {
        /// The link.
        path: PathBuf,
    },
    /// A path that is not valid UTF-8 cannot be named in JSON faithfully.
    #[error("{path} is not a UTF-8 path")]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// Something other than a file, directory or symlink (socket, device, FIFO).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file's size changed between the walk and its hashing: the manifest would record a
    /// size and a digest of different contents.
    #[error(
        "{path} changed while it was being hashed ({listed} bytes when listed, {hashed} when hashed)"
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// Its size when the directory was walked.
        listed: u64,
        /// Its size when it was hashed.
        hashed: u64,
    },
    /// A provenance value is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The manifest could not be serialized canonically.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// Told how hashing advances, e.g. to draw a progress bar. Called from the hashing threads.
pub trait HashProgress: Sync {
    /// Hashing starts: this many files and bytes.
    fn begin(&self, _files: usize, _bytes: u64) {}
    /// This many more bytes are hashed.
    fn advance(&self, _bytes: u64) {}
    /// Hashing is over.
    fn finish(&self) {}
    /// Something the user should know that does not stop the manifest (the caller decides how
    /// to show it).
    fn warning(&self, _message: &str) {}
}

/// No progress reports.
impl HashProgress for () {}

/// Makes the manifest of the file or directory at `model`.
pub fn build(
    model: &Path,
    provenance: &Provenance,
    skip: &[PathBuf],
) -> Result<Manifest, ManifestError> {
    build_with_progress(model, provenance, skip, &())
}

/// [`build`], reporting hashing progress.
pub fn build_with_progress(
    model: &Path,
    provenance: &Provenance,
    skip: &[PathBuf],
    progress: &dyn HashProgress,
) -> Result<Manifest, ManifestError> {
    let git_commit = match &provenance.git_commit {
        Some(commit) => Some(check_git_commit(commit)?),
        None => git_head(model, progress),
    };
    let dataset = match (&provenance.dataset_id, &provenance.dataset_digest) {
        (None, None) => None,
        (id, digest) => {
            if let Some(digest) = digest {
                Digest::parse(digest)
                    .map_err(|e| ManifestError::Invalid(format!("--dataset-digest: {e}")))?;
            }
            Some(Dataset {
                id: id.clone(),
                digest: digest.clone(),
            })
        }
    };
    let training_image = provenance
        .training_image
        .as_deref()
        .map(check_image_digest)
        .transpose()?;
    let files = build_files(model, skip, progress)?;
    Ok(Manifest {
        manifest_version: MANIFEST_VERSION,
        files,
        git_commit,
        dataset,
        training_image,
        parameters: provenance.parameters.clone(),
        tool: Tool {
            name: "signet".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    })
}

/// Every file of the model with its size and digest, in path order (no provenance).
pub fn build_files(
    model: &Path,
    skip: &[PathBuf],
    progress: &dyn HashProgress,
) -> Result<Vec<FileEntry>, ManifestError> {
    hash_files(list_files(model, skip)?, progress)
}

impl Manifest {
    /// The canonical JSON bytes: what is signed.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, ManifestError> {
        Ok(to_canonical_vec(self)?)
    }
}

/// How a model on disk differs from its signed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A file in the manifest is not on disk.
    Missing(String),
    /// A file on disk is not in the manifest.
    Extra(String),
    /// A file's content (size or digest) differs.
    Changed(String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(path) => write!(f, "{path} is in the manifest but missing"),
            Difference::Extra(path) => write!(f, "{path} is not in the manifest"),
            Difference::Changed(path) => write!(f, "{path} does not match its signed digest"),
        }
    }
}

/// Every file-level difference between the signed manifest and the model's files, in path order.
pub fn compare(signed: &[FileEntry], actual: &[FileEntry]) -> Vec<Difference> {
    let signed: BTreeMap<&str, &FileEntry> = signed.iter().map(|f| (f.path.as_str(), f)).collect();
    let actual: BTreeMap<&str, &FileEntry> = actual.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut differences = Vec::new();
    for (path, expected) in &signed {
        match actual.get(path) {
            None => differences.push(Difference::Missing(path.to_string())),
            Some(found) if found.size != expected.size || found.digest != expected.digest => {
                differences.push(Difference::Changed(path.to_string()));
            }
            Some(_) => {}
        }
    }
    for path in actual.keys() {
        if !signed.contains_key(path) {
            differences.push(Difference::Extra(path.to_string()));
        }
    }
    differences
}

fn check_git_commit(commit: &str) -> Result<String, ManifestError> {
    let ok = matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(commit.to_ascii_lowercase())
    } else {
        Err(ManifestError::Invalid(
            "--git-commit must be a full 40- or 64-digit hex commit id".into(),
        ))
    }
}

/// A training image must be named by digest: a tag such as `:latest` can move.
fn check_image_digest(image: &str) -> Result<String, ManifestError> {
    let digest = image.rsplit_once('@').map_or(image, |(_, digest)| digest);
    let refused = || {
        ManifestError::Invalid(format!(
            "--image must be pinned by digest (sha256:<64 hex> or name@sha256:<64 hex>), not {image:?}"
        ))
    };
    let hex = digest.strip_prefix("sha256:").ok_or_else(refused)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    Ok(image.to_string())
}

/// The HEAD commit of the git work tree holding `model`, if it is clean; a warning otherwise.
fn git_head(model: &Path, progress: &dyn HashProgress) -> Option<String> {
    let dir = if model.is_dir() {
        model
    } else {
        model.parent()?
    };
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "HEAD"])?;
    match run(&["status", "--porcelain"]) {
        Some(status) if status.is_empty() => Some(head),
        _ => {
            progress.warning(&format!(
                "the git work tree at {} has uncommitted changes; no git commit recorded (commit \
                 them, or pass --git-commit)",
                dir.display()
            ));
            None
        }
    }
}

/// Makes the error for an I/O failure on `path`.
fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError {
    let path = path.to_path_buf();
    move |source| ManifestError::Read { path, source }
}

#[cfg(test)]
mod tests;
