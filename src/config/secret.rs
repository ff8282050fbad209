//! `Secret<T>`: a value that never prints. Read with the greppable `expose()`.
use zeroize::Zeroize;

/// A secret (PIN, token). `Debug` prints `[redacted]`; there is no `Display` or `Serialize`.
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself. Every use is a place that must not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize + Clone> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl<T: Zeroize> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Where a secret comes from: an environment variable or a file, never the config itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The named environment variable.
    Env(String),
    /// The file at this path (trailing newline removed).
    File(std::path::PathBuf),
}

/// Why a secret could not be read. Names the source, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The variable is unset or empty.
    #[error("environment variable {0} is not set or empty")]
    EnvMissing(String),
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("secret file {0} is empty")]
    FileEmpty(std::path::PathBuf),
}

impl SecretSource {
    /// Reads the secret now.
    pub fn read(&self) -> Result<Secret<String>, SecretError> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
                _ => Err(SecretError::EnvMissing(name.clone())),
            },
            SecretSource::File(path) => {
                let mut text =
                    std::fs::read_to_string(path).map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?;
                let trimmed_len = text.trim_end_matches(['\r', '\n']).len();
                text.truncate(trimmed_len);
                if text.is_empty() {
                    return Err(SecretError::FileEmpty(path.clone()));
                }
                Ok(Secret::new(text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("1234".to_string());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "1234");
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pin");
        std::fs::write(&path, "9876\n").expect("write");
        let secret = SecretSource::File(path).read().expect("read");
        assert_eq!(secret.expose(), "9876");
    }
}
