//! The walk: every file under the model, in byte order of its `/`-separated relative path, with
//! `.git` and signet's own outputs left out and links followed only to files inside the model.
use std::path::{Path, PathBuf};

use super::{ManifestError, OUTPUT_FILES, read_error};

/// A file to hash: where it is read from, and the path it is recorded under.
pub(super) struct Pending {
    pub(super) source: PathBuf,
    pub(super) path: String,
    pub(super) size: u64,
}

pub(super) fn list_files(model: &Path, skip: &[PathBuf]) -> Result<Vec<Pending>, ManifestError> {
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
