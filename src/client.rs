//! The HTTP client the CLI uses to talk to a signet server.
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::jwks::JwkSet;

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached (exit 2).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A local file could not be read (exit 2).
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error (exit 1).
    #[error("{url}: HTTP {status} {code}: {detail}")]
    Refused {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The problem's `code`, if any.
        code: String,
        /// The problem's `detail`, if any.
        detail: String,
    },
    /// Plain HTTP to a host that is not loopback, without `--insecure-http` (exit 2).
    #[error(
        "{url}: refusing plain http:// to a host that is not loopback (anyone on the path could \
         change the answer); use https://, or --insecure-http"
    )]
    InsecureTransport {
        /// The URL.
        url: String,
    },
    /// The answer is not what the API promises (exit 1).
    #[error("{url}: unexpected answer: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// The problem's `code` when the server refused, else `""`.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Refused { code, .. } => code,
            _ => "",
        }
    }

    /// Whether this is a local problem (unreachable server, unreadable file): exit 2, not 1.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::File { .. }
                | ClientError::InsecureTransport { .. }
        )
    }

    /// Whether trying again later may succeed: the server was unreachable, or said it is
    /// temporarily unable (503) or rate-limited the caller.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::File { .. } | ClientError::InsecureTransport { .. } => false,
            ClientError::Refused { status, code, .. } => *status == 503 || code == "rate_limited",
            ClientError::Malformed { .. } => false,
        }
    }
}

/// How many times a transient failure is retried, and the first back-off (doubled each time).
const RETRIES: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// `GET /v1/log/entries/{index}` (and each item of `/v1/log/entries`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LogEntry {
    /// Position in the log.
    pub index: u64,
    /// The leaf bytes, base64.
    pub leaf_input: String,
    /// The leaf hash, base64.
    pub leaf_hash: String,
}

/// An inclusion or consistency proof's hashes, base64.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LogProof {
    /// The proof's hashes.
    pub hashes: Vec<String>,
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// Whether `url` may be fetched: `https://`, or `http://` to a loopback host (or anywhere when
/// `insecure_http`).
pub fn check_transport(url: &str, insecure_http: bool) -> Result<(), ClientError> {
    let insecure = || ClientError::InsecureTransport {
        url: url.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|_| ClientError::Unreachable {
        url: url.to_string(),
        reason: "not a URL".into(),
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if insecure_http => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err(insecure()),
        },
        _ => Err(ClientError::Unreachable {
            url: url.to_string(),
            reason: "only http:// and https:// URLs are supported".into(),
        }),
    }
}

/// Reads a small text document from a URL (checked by `check_transport`) or a file.
pub async fn load_text(source: &str, insecure_http: bool) -> Result<String, ClientError> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let client = Client::connect(source, insecure_http)?;
        return client.get_text("").await;
    }
    std::fs::read_to_string(source).map_err(|e| ClientError::File {
        path: source.to_string(),
        reason: e.to_string(),
    })
}

impl Client {
    /// A client for `server`, refusing plain HTTP off loopback unless `insecure_http`.
    pub fn connect(server: &str, insecure_http: bool) -> Result<Client, ClientError> {
        check_transport(server, insecure_http)?;
        Client::new(server)
    }

    /// A client for `server` (e.g. `http://127.0.0.1:8420`), whatever its scheme.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: server.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            http,
            base: server.trim_end_matches('/').to_string(),
        })
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        self.send(self.http.get(&url), url).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.without_url().to_string(),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        Err(ClientError::Refused {
            url,
            status,
            code: problem["code"].as_str().unwrap_or("").to_string(),
            detail: problem["detail"].as_str().unwrap_or("").to_string(),
        })
    }

    /// POSTs `body` as JSON with a bearer token and decodes the JSON answer. A transient failure
    /// (unreachable, 503, rate limited) is retried a few times with exponential back-off; a
    /// repeated signing request at worst adds one more logged signature, never a wrong one.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let request = self.http.post(&url).bearer_auth(bearer).json(body);
            match self.send(request, url.clone()).await {
                Ok(response) => {
                    return response.json().await.map_err(|e| ClientError::Malformed {
                        url,
                        reason: e.without_url().to_string(),
                    });
                }
                Err(error) if error.is_transient() && attempt < RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// DELETE with a bearer token; the answer's body is ignored.
    pub async fn delete(&self, path: &str, bearer: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        self.send(self.http.delete(&url).bearer_auth(bearer), url)
            .await
            .map(drop)
    }

    /// GET a JSON document.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.get(path)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Malformed {
                url,
                reason: e.without_url().to_string(),
            })
    }

    /// GET a text document.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        self.get(path)
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Malformed {
                url,
                reason: e.without_url().to_string(),
            })
    }

    /// The server's JWKS.
    pub async fn jwks(&self) -> Result<JwkSet, ClientError> {
        self.get_json("/.well-known/jwks.json").await
    }
}

/// Reads a JWKS from a URL or a file.
pub async fn load_jwks(source: &str, insecure_http: bool) -> Result<JwkSet, ClientError> {
    let text = load_text(source, insecure_http).await?;
    serde_json::from_str(&text).map_err(|e| ClientError::Malformed {
        url: source.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_unless_forced() {
        for url in [
            "https://signet.example",
            "http://127.0.0.1:8420",
            "http://127.8.9.10/v1/trust",
            "http://localhost:8420",
            "http://[::1]:8420",
        ] {
            assert!(check_transport(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://signet.example",
            "http://10.0.0.5:8420",
            "http://localhost.evil.example",
        ] {
            assert!(
                matches!(
                    check_transport(url, false),
                    Err(ClientError::InsecureTransport { .. })
                ),
                "{url}"
            );
            assert!(check_transport(url, true).is_ok(), "{url}");
        }
        assert!(check_transport("ftp://signet.example", true).is_err());
    }
}
