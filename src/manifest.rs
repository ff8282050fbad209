//! The model manifest: every file's path, size and SHA-256, with the build's provenance (git
//! commit, dataset, training image, parameters), as RFC 8785 canonical JSON.
//!
//! The walk is deterministic: relative `/`-separated paths in byte order. `.git` and signet's
//! own output files are left out; symlinks are followed only to files inside the model
//! directory. Files are hashed in parallel, two per core with their rounds interleaved (the
//! `sha256-lanes` crate), through memory-mapped windows, so memory stays flat whatever the
//! model's size.
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

use sha256_lanes::{BLOCK, Lane};

/// The manifest format's version.
pub const MANIFEST_VERSION: u32 = 1;

/// Files signet writes beside a model; never part of its manifest.
pub const OUTPUT_FILES: &[&str] = &[
    "manifest.json",
    "manifest.json.sig",
    "model.sig",
    "signet-receipt.json",
];

const MIB: usize = 1024 * 1024;
/// Read size per call for small files.
const READ_BUFFER: usize = MIB;
/// Files at least this large are memory-mapped and hashed two per thread, their SHA-256 rounds
/// interleaved (the `sha256-lanes` crate); smaller ones are read and hashed one at a time.
const PAIRED_MIN: u64 = 4 * MIB as u64;
/// Large files are hashed through memory maps of up to this size...
const MAP_WINDOW: usize = 16 * MIB;
/// ...with all threads' windows together at most this (windows are at least 1 MiB, so past 16
/// threads it is 1 MiB a window), so memory stays flat on many cores.
const MAP_BUDGET: usize = 32 * MIB;

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
        None => git_head(model),
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
fn git_head(model: &Path) -> Option<String> {
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
            eprintln!(
                "signet: warning: the git work tree at {} has uncommitted changes; no git commit recorded \
                 (commit them, or pass --git-commit)",
                dir.display()
            );
            None
        }
    }
}

/// Makes the error for an I/O failure on `path`.
fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError {
    let path = path.to_path_buf();
    move |source| ManifestError::Read { path, source }
}

/// A file to hash: where it is read from, and the path it is recorded under.
struct Pending {
    source: PathBuf,
    path: String,
    size: u64,
}

fn list_files(model: &Path, skip: &[PathBuf]) -> Result<Vec<Pending>, ManifestError> {
    let metadata = std::fs::metadata(model).map_err(read_error(model))?;
    if metadata.is_file() {
        let name = model.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            ManifestError::NonUtf8Path {
                path: model.to_path_buf(),
            }
        })?;
        return Ok(vec![Pending {
            source: model.to_path_buf(),
            path: name.to_string(),
            size: metadata.len(),
        }]);
    }
    let root = std::fs::canonicalize(model).map_err(read_error(model))?;
    let skip: Vec<PathBuf> = skip
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut files = Vec::new();
    let mut directories = vec![(model.to_path_buf(), String::new())];
    while let Some((directory, prefix)) = directories.pop() {
        let entries = std::fs::read_dir(&directory).map_err(read_error(&directory))?;
        for entry in entries {
            let entry = entry.map_err(read_error(&directory))?;
            let path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| ManifestError::NonUtf8Path { path: path.clone() })?;
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if name == ".git" || (prefix.is_empty() && OUTPUT_FILES.contains(&name.as_str())) {
                continue;
            }
            let kind = entry.file_type().map_err(read_error(&path))?;
            if kind.is_dir() {
                directories.push((path, relative));
                continue;
            }
            let source = if kind.is_symlink() {
                let target = std::fs::canonicalize(&path)
                    .map_err(|_| ManifestError::SymlinkEscapes { path: path.clone() })?;
                if !target.starts_with(&root) {
                    return Err(ManifestError::SymlinkEscapes { path });
                }
                if target.is_dir() {
                    return Err(ManifestError::SymlinkedDirectory { path });
                }
                target
            } else {
                path.clone()
            };
            if skip
                .iter()
                .any(|s| std::fs::canonicalize(&source).is_ok_and(|c| &c == s))
            {
                continue;
            }
            let metadata = std::fs::metadata(&source).map_err(read_error(&source))?;
            if !metadata.is_file() {
                return Err(ManifestError::NotAFile { path });
            }
            files.push(Pending {
                source,
                path: relative,
                size: metadata.len(),
            });
        }
    }
    // Byte order of the UTF-8 paths: the same on every platform and locale.
    files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(files)
}

/// Hashes every file, largest first, on one thread per core; returns them in path order.
fn hash_files(
    files: Vec<Pending>,
    progress: &dyn HashProgress,
) -> Result<Vec<FileEntry>, ManifestError> {
    progress.begin(files.len(), files.iter().map(|f| f.size).sum());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|a, b| files[*b].size.cmp(&files[*a].size));
    // Two windows per thread; whole MiB so every window starts on a page boundary.
    let window = (MAP_BUDGET / threads / 2).clamp(MIB, MAP_WINDOW) / MIB * MIB;
    let next = AtomicUsize::new(0);
    let take = || order.get(next.fetch_add(1, Ordering::Relaxed)).copied();
    let results: Mutex<Vec<Option<Result<String, ManifestError>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    let record = |index: usize, outcome: Result<String, ManifestError>| {
        if let Ok(mut results) = results.lock() {
            results[index] = Some(outcome);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| hash_on_this_thread(&files, &take, &record, window, progress));
        }
    });
    progress.finish();
    let results = results.into_inner().unwrap_or_default();
    files
        .into_iter()
        .zip(results)
        .map(|(file, result)| {
            let digest = result.ok_or_else(|| ManifestError::Read {
                path: file.source.clone(),
                source: std::io::Error::other("not hashed"),
            })??;
            Ok(FileEntry {
                path: file.path,
                size: file.size,
                digest,
            })
        })
        .collect()
}

/// One hashing thread: takes files from the shared queue until it is empty. Large files are
/// hashed two at a time with their rounds interleaved, each pair refilled from the queue as
/// soon as one of them ends; small ones are read and hashed on their own.
fn hash_on_this_thread(
    files: &[Pending],
    take: &dyn Fn() -> Option<usize>,
    record: &dyn Fn(usize, Result<String, ManifestError>),
    window: usize,
    progress: &dyn HashProgress,
) {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut lanes: [Option<MappedFile>; 2] = [None, None];
    let mut queue_empty = false;
    loop {
        for lane in &mut lanes {
            while lane.is_none() && !queue_empty {
                let Some(index) = take() else {
                    queue_empty = true;
                    break;
                };
                let file = &files[index];
                if file.size < PAIRED_MIN {
                    record(
                        index,
                        read_and_hash(&file.source, file.size, &mut buffer, progress),
                    );
                    continue;
                }
                match MappedFile::open(index, file, window) {
                    Ok(mapped) => *lane = Some(mapped),
                    Err(error) => record(index, Err(error)),
                }
            }
        }
        let mut ready = [0usize; 2];
        let mut lane_ended = false;
        for (lane, ready) in lanes.iter_mut().zip(&mut ready) {
            let Some(file) = lane else { continue };
            match file.ready() {
                Ok(0) => {
                    if let Some(file) = lane.take() {
                        record(file.index, Ok(file.finish(progress)));
                    }
                    lane_ended = true;
                }
                Ok(length) => *ready = length,
                Err(error) => {
                    record(file.index, Err(error));
                    *lane = None;
                    lane_ended = true;
                }
            }
        }
        if lane_ended && !queue_empty {
            // Pair the survivor with the next file before hashing on.
            continue;
        }
        match &mut lanes {
            [Some(first), Some(second)] => {
                let length = ready[0].min(ready[1]);
                MappedFile::hash_pair(first, second, length);
                progress.advance(2 * length as u64);
            }
            [Some(only), None] | [None, Some(only)] => {
                let length = ready[0].max(ready[1]);
                only.hash_alone(length);
                progress.advance(length as u64);
            }
            [None, None] if queue_empty => break,
            [None, None] => {}
        }
    }
}

/// A large file being hashed one memory-mapped window at a time, straight from the page cache
/// (no copy); memory stays at one window per file in flight.
struct MappedFile<'a> {
    index: usize,
    path: &'a Path,
    file: File,
    size: u64,
    window_size: usize,
    window: Option<memmap2::Mmap>,
    /// Where the current window starts in the file.
    window_offset: u64,
    /// Bytes of the current window already hashed.
    position: usize,
    lane: Lane,
}

impl<'a> MappedFile<'a> {
    fn open(index: usize, listed: &'a Pending, window_size: usize) -> Result<Self, ManifestError> {
        let path = listed.source.as_path();
        let file = File::open(path).map_err(read_error(path))?;
        let size = file.metadata().map_err(read_error(path))?.len();
        if size != listed.size {
            return Err(ManifestError::Changed {
                path: path.to_path_buf(),
                listed: listed.size,
                hashed: size,
            });
        }
        Ok(Self {
            index,
            path,
            file,
            size,
            window_size,
            window: None,
            window_offset: 0,
            position: 0,
            lane: Lane::default(),
        })
    }

    /// How many bytes of whole blocks are ready in the current window, mapping the next window
    /// once this one is used up; 0 at the end, where a tail shorter than a block may be left
    /// for [`MappedFile::finish`].
    fn ready(&mut self) -> Result<usize, ManifestError> {
        loop {
            if let Some(window) = &self.window {
                let whole = window.len() - window.len() % BLOCK;
                if self.position < whole {
                    return Ok(whole - self.position);
                }
                let end = self.window_offset + window.len() as u64;
                if end >= self.size {
                    return Ok(0);
                }
                // Unmapped before the next is mapped, so memory stays at one window.
                self.window = None;
                self.window_offset = end;
            }
            if self.window_offset >= self.size {
                return Ok(0);
            }
            let length = (self.size - self.window_offset).min(self.window_size as u64) as usize;
            // SAFETY: the map is read-only and dropped before the next window. A file truncated
            // underneath would fault; models are not rewritten while they are being signed.
            #[allow(unsafe_code)]
            let window = unsafe {
                memmap2::MmapOptions::new()
                    .offset(self.window_offset)
                    .len(length)
                    .populate()
                    .map(&self.file)
            }
            .map_err(read_error(self.path))?;
            self.window = Some(window);
            self.position = 0;
        }
    }

    /// Hashes `length` ready bytes of each file, interleaved on this core.
    fn hash_pair(first: &mut Self, second: &mut Self, length: usize) {
        let (Some(first_window), Some(second_window)) = (&first.window, &second.window) else {
            unreachable!("bytes are ready only in a mapped window");
        };
        Lane::absorb_pair(
            &mut first.lane,
            &first_window[first.position..first.position + length],
            &mut second.lane,
            &second_window[second.position..second.position + length],
        );
        first.position += length;
        second.position += length;
    }

    /// Hashes `length` ready bytes of this file alone.
    fn hash_alone(&mut self, length: usize) {
        let Some(window) = &self.window else {
            unreachable!("bytes are ready only in a mapped window");
        };
        self.lane
            .absorb(&window[self.position..self.position + length]);
        self.position += length;
    }

    /// `sha256:<hex>` of the file, taking the tail of its last window.
    fn finish(self, progress: &dyn HashProgress) -> String {
        let tail = self
            .window
            .as_ref()
            .map_or(&[][..], |window| &window[self.position..]);
        progress.advance(tail.len() as u64);
        format!("sha256:{}", hex::encode(self.lane.finish(tail)))
    }
}

/// `sha256:<hex>` of a small file, read through `buffer`.
fn read_and_hash(
    path: &Path,
    listed_size: u64,
    buffer: &mut [u8],
    progress: &dyn HashProgress,
) -> Result<String, ManifestError> {
    let mut file = File::open(path).map_err(read_error(path))?;
    let mut hasher = Sha256::new();
    let mut hashed = 0u64;
    loop {
        // The error (and its path copy) only when a read fails, not on every read.
        let n = file.read(buffer).map_err(|e| read_error(path)(e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        hashed += n as u64;
        progress.advance(n as u64);
    }
    if hashed != listed_size {
        return Err(ManifestError::Changed {
            path: path.to_path_buf(),
            listed: listed_size,
            hashed,
        });
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, content: &[u8]) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, content).expect("write");
    }

    #[test]
    fn large_files_hashed_in_pairs_match_sha2() {
        // Sizes around the paired-hashing threshold and the map window (whole MiB, 8 MiB with
        // 2 threads), so that lanes end at different times and are refilled from the queue;
        // which files end up paired depends on the threads' timing. The padding cases
        // themselves are covered in the `sha256-lanes` crate.
        let dir = tempfile::tempdir().expect("tempdir");
        let sizes = [
            PAIRED_MIN as usize - 1,
            PAIRED_MIN as usize,
            PAIRED_MIN as usize + 55,
            9 * MIB + 63,
            17 * MIB + 64,
            5 * MIB + 1,
            12 * MIB,
            3,
        ];
        let mut expected = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let content: Vec<u8> = (0..*size)
                .map(|n| (n as u8).wrapping_mul(7) ^ (n >> 12) as u8 ^ i as u8)
                .collect();
            let name = format!("shard-{i}.bin");
            write(dir.path(), &name, &content);
            expected.push((
                name,
                format!("sha256:{}", hex::encode(Sha256::digest(&content))),
            ));
        }
        let manifest = build(dir.path(), &Provenance::default(), &[]).expect("manifest");
        let got: Vec<(String, String)> = manifest
            .files
            .into_iter()
            .map(|f| (f.path, f.digest))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_file_whose_size_changed_after_the_walk_is_an_error() {
        // The manifest must never pair one size with another content's digest.
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, size) in [("small.bin", 10usize), ("large.bin", PAIRED_MIN as usize)] {
            write(dir.path(), name, &vec![1u8; size]);
            let listed = Pending {
                source: dir.path().join(name),
                path: name.to_string(),
                size: size as u64 + 1,
            };
            let outcome = if size < PAIRED_MIN as usize {
                read_and_hash(&listed.source, listed.size, &mut [0u8; 64], &())
            } else {
                MappedFile::open(0, &listed, MIB).map(|_| String::new())
            };
            assert!(
                matches!(outcome, Err(ManifestError::Changed { listed: l, hashed: h, .. }) if l == size as u64 + 1 && h == size as u64),
                "{name}: {outcome:?}"
            );
        }
    }

    #[test]
    fn walks_in_byte_order_and_leaves_out_git_and_outputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "b.bin", b"b");
        write(dir.path(), "a/z.bin", b"z");
        write(dir.path(), "B.bin", b"B");
        write(dir.path(), "a/.git/config", b"x");
        write(dir.path(), ".git/HEAD", b"x");
        write(dir.path(), "manifest.json", b"{}");
        write(dir.path(), "model.sig", b"x");
        write(
            dir.path(),
            "sub/manifest.json",
            b"kept: only the top level holds outputs",
        );
        let manifest = build(dir.path(), &Provenance::default(), &[]).expect("manifest");
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["B.bin", "a/z.bin", "b.bin", "sub/manifest.json"]);
        let b = &manifest.files[2];
        assert_eq!(b.size, 1);
        assert_eq!(
            b.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(b"b")))
        );
    }

    #[test]
    fn symlinks_inside_are_followed_and_outside_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "weights.bin", b"w");
        std::os::unix::fs::symlink(dir.path().join("weights.bin"), dir.path().join("alias.bin"))
            .expect("link");
        let manifest = build(dir.path(), &Provenance::default(), &[]).expect("inside is fine");
        assert_eq!(manifest.files.len(), 2);
        assert_eq!(manifest.files[0].digest, manifest.files[1].digest);
        write(outside.path(), "secret", b"s");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("escape"))
            .expect("link");
        assert!(matches!(
            build(dir.path(), &Provenance::default(), &[]),
            Err(ManifestError::SymlinkEscapes { .. })
        ));
    }

    #[test]
    fn dangling_links_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling"))
            .expect("link");
        assert!(build(dir.path(), &Provenance::default(), &[]).is_err());
    }

    #[test]
    fn image_must_be_pinned_by_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(check_image_digest(&digest).is_ok());
        assert!(check_image_digest(&format!("ghcr.io/acme/train@{digest}")).is_ok());
        assert!(check_image_digest("ghcr.io/acme/train:latest").is_err());
        assert!(check_image_digest("sha256:abc").is_err());
        assert!(check_git_commit(&"A".repeat(40)).is_ok());
        assert!(check_git_commit("main").is_err());
    }

    #[test]
    fn canonical_json_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "w.bin", b"weights");
        let provenance = Provenance {
            git_commit: Some("0".repeat(40)),
            dataset_id: Some("imagenet-2012".into()),
            dataset_digest: Some(format!("sha256:{}", "1".repeat(64))),
            training_image: Some(format!("sha256:{}", "2".repeat(64))),
            parameters: [("lr".to_string(), "0.001".to_string())]
                .into_iter()
                .collect(),
        };
        let manifest = build(dir.path(), &provenance, &[]).expect("manifest");
        let text = String::from_utf8(manifest.to_canonical_json().expect("json")).expect("utf8");
        assert!(
            text.starts_with(r#"{"dataset":{"digest":"sha256:1111"#),
            "{text}"
        );
        assert!(text.contains(r#""files":[{"digest":"sha256:"#), "{text}");
        assert!(!text.contains(' ') && !text.contains('\n'));
        let back: Manifest = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, manifest);
    }
}
