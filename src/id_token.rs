//! Where `signet sign` gets the caller's OIDC ID token: a file, `SIGNET_ID_TOKEN`, or the CI's
//! own issuer (GitHub Actions' token endpoint; GitLab's `id_tokens`, named `SIGNET_ID_TOKEN`).
//! The token is a bearer credential: it is never printed, logged or put in an error.
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

/// The environment variable holding a token (also the name to give GitLab's `id_tokens` entry).
pub const TOKEN_ENV: &str = "SIGNET_ID_TOKEN";
/// GitHub Actions' token request URL (set when the job has `permissions: id-token: write`).
pub const GITHUB_URL_ENV: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// GitHub Actions' bearer for that URL.
pub const GITHUB_TOKEN_ENV: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// No source is configured.
    #[error(
        "no OIDC ID token: pass --token-file, set {TOKEN_ENV}, or run in GitHub Actions with \
         `permissions: id-token: write` (GitLab: add an `id_tokens` entry named {TOKEN_ENV})"
    )]
    NoSource,
    /// The token file could not be read.
    #[error("cannot read the token file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why (an I/O error; never the content).
        reason: String,
    },
    /// The source holds no token.
    #[error("{0} is empty")]
    Empty(String),
    /// GitHub's token endpoint failed.
    #[error("GitHub Actions' ID token endpoint: {0}")]
    GitHub(String),
}

/// Where the token comes from; it can be asked again (a file may be refreshed, GitHub mints a new
/// token each time).
#[derive(Clone)]
pub enum TokenSource {
    /// `--token-file`.
    File(PathBuf),
    /// `SIGNET_ID_TOKEN` (also GitLab's `id_tokens`).
    Env,
    /// GitHub Actions' endpoint, for this audience.
    GitHubActions {
        /// The request URL.
        url: String,
        /// Its bearer (a secret).
        bearer: Zeroizing<String>,
        /// The audience signet expects.
        audience: String,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TokenSource {
    /// The first source that is configured: `--token-file`, `SIGNET_ID_TOKEN`, GitHub Actions.
    pub fn detect(token_file: Option<PathBuf>, audience: &str) -> Result<Self, IdTokenError> {
        if let Some(path) = token_file {
            return Ok(TokenSource::File(path));
        }
        if std::env::var_os(TOKEN_ENV).is_some() {
            return Ok(TokenSource::Env);
        }
        if let (Ok(url), Ok(bearer)) = (
            std::env::var(GITHUB_URL_ENV),
            std::env::var(GITHUB_TOKEN_ENV),
        ) {
            return Ok(TokenSource::GitHubActions {
                url,
                bearer: Zeroizing::new(bearer),
                audience: audience.to_string(),
            });
        }
        Err(IdTokenError::NoSource)
    }

    /// Where the token comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(path) => format!("token file {}", path.display()),
            TokenSource::Env => TOKEN_ENV.to_string(),
            TokenSource::GitHubActions { audience, .. } => {
                format!("GitHub Actions (audience {audience})")
            }
        }
    }

    /// Fetches a token.
    pub async fn token(&self) -> Result<Zeroizing<String>, IdTokenError> {
        let token = match self {
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| IdTokenError::File {
                    path: path.clone(),
                    reason: e.kind().to_string(),
                })?;
                Zeroizing::new(text.trim().to_string())
            }
            TokenSource::Env => Zeroizing::new(
                std::env::var(TOKEN_ENV)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
            TokenSource::GitHubActions {
                url,
                bearer,
                audience,
            } => github_token(url, bearer, audience).await?,
        };
        if token.is_empty() {
            return Err(IdTokenError::Empty(self.describe()));
        }
        Ok(token)
    }
}

#[derive(Deserialize)]
struct GitHubAnswer {
    value: String,
}

async fn github_token(
    url: &str,
    bearer: &str,
    audience: &str,
) -> Result<Zeroizing<String>, IdTokenError> {
    let mut url = url::Url::parse(url)
        .map_err(|_| IdTokenError::GitHub("the request URL is invalid".into()))?;
    url.query_pairs_mut().append_pair("audience", audience);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| IdTokenError::GitHub(e.to_string()))?;
    let response = http
        .get(url)
        .bearer_auth(bearer)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| IdTokenError::GitHub(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(IdTokenError::GitHub(format!("HTTP {}", response.status())));
    }
    let answer: GitHubAnswer = response
        .json()
        .await
        .map_err(|_| IdTokenError::GitHub("the answer has no `value`".into()))?;
    Ok(Zeroizing::new(answer.value))
}
