//! Per-issuer signing keys: discovery through `/.well-known/openid-configuration`, the JWKS
//! fetched and cached, refetched when stale or on an unknown `kid`, but on an unknown `kid` no
//! more often than the cooldown, so made-up kids cannot make signet hammer the issuer.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

use crate::clock::Clock;

use jsonwebtoken::Algorithm as JwtAlgorithm;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use serde_json::Value;

use super::{OidcError, is_accepted_algorithm};
use crate::config::IssuerConfig;

/// Least time between fetches after a failed one.
const FAILED_FETCH_RETRY: Duration = Duration::from_secs(5);

/// Largest discovery or JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// How long past `jwks_max_age` a held key is still served while another request refreshes.
const STALE_WHILE_REFRESHING: Duration = Duration::from_secs(60);

/// The shared HTTP client for issuer calls: bounded time, no cookies.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// A verification key from an issuer's JWKS with the one algorithm it may verify.
#[derive(Clone)]
pub struct IssuerKey {
    /// The key.
    pub decoding_key: DecodingKey,
    /// Its algorithm: the JWK's `alg`, or the only one its type and curve allow.
    pub algorithm: JwtAlgorithm,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, IssuerKey>,
    /// Clock milliseconds of the last successful fetch.
    fetched_at: Option<i64>,
    /// Clock milliseconds and outcome of the last fetch.
    last_attempt: Option<(i64, Result<(), OidcError>)>,
}

/// One issuer's configuration and key cache.
pub struct IssuerKeys {
    config: IssuerConfig,
    http: reqwest::Client,
    allow_development: bool,
    clock: Arc<dyn Clock>,
    cache: RwLock<Cache>,
    /// Serializes fetches so that concurrent misses make one request.
    fetch_lock: tokio::sync::Mutex<()>,
    /// How many JWKS fetches were made (for tests and metrics).
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// A cache for `config`, empty until the first token arrives.
    pub fn new(
        config: IssuerConfig,
        http: reqwest::Client,
        allow_development: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        IssuerKeys {
            config,
            http,
            allow_development,
            clock,
            cache: RwLock::new(Cache::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The issuer's configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// JWKS fetches made so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cached key for `kid`, whether the cache is fresh, and the error of the last fetch if
    /// it failed within the cooldown.
    fn cached(&self, kid: &str) -> (Option<IssuerKey>, bool, Option<Result<(), OidcError>>) {
        let max_age = self.config.jwks_max_age.get();
        let cooldown = self.config.jwks_refetch_cooldown.get();
        let now = self.clock.now_unix_millis();
        let within = |at: i64, limit: Duration| elapsed_since(at, now) < limit;
        match self.cache.read() {
            Ok(cache) => {
                let fresh = cache.fetched_at.is_some_and(|t| within(t, max_age));
                let recent = cache
                    .last_attempt
                    .as_ref()
                    // A failed fetch is retried sooner, so signet recovers soon after the issuer.
                    .filter(|(t, outcome)| {
                        let wait = if outcome.is_ok() {
                            cooldown
                        } else {
                            cooldown.min(FAILED_FETCH_RETRY)
                        };
                        within(*t, wait)
                    })
                    .map(|(_, outcome)| outcome.clone());
                (cache.keys.get(kid).cloned(), fresh, recent)
            }
            Err(_) => (None, false, None),
        }
    }

    /// Whether the JWKS was fetched less than `jwks_max_age` + `extra` ago.
    fn fetched_within(&self, extra: Duration) -> bool {
        let limit = self.config.jwks_max_age.get().saturating_add(extra);
        let now = self.clock.now_unix_millis();
        self.cache.read().is_ok_and(|cache| {
            cache
                .fetched_at
                .is_some_and(|t| elapsed_since(t, now) < limit)
        })
    }

    /// The key with this `kid`, fetching the JWKS when the cache is stale or lacks it, but not
    /// again within the cooldown of the last attempt.
    pub async fn key(&self, kid: &str) -> Result<IssuerKey, OidcError> {
        let guard = match self.cached(kid) {
            (Some(key), true, _) => return Ok(key),
            (stale, _, _) => {
                let just_expired = stale.filter(|_| self.fetched_within(STALE_WHILE_REFRESHING));
                match (just_expired, self.fetch_lock.try_lock()) {
                    (_, Ok(guard)) => guard,
                    // Another request is refreshing the JWKS: a key that expired moments ago
                    // is served meanwhile rather than waiting on the issuer (up to two HTTP
                    // timeouts). Older ones wait, so a key the issuer removed stops working
                    // at most this long after `jwks_max_age`.
                    (Some(key), Err(_)) => return Ok(key),
                    (_, Err(_)) => self.fetch_lock.lock().await,
                }
            }
        };
        let _guard = guard;
        // Another request may have fetched while this one waited.
        let (cached, fresh, recent_attempt) = self.cached(kid);
        match (cached, fresh, recent_attempt) {
            (Some(key), true, _) => Ok(key),
            // Within the cooldown: serve a stale key if we have one, else the last outcome.
            (Some(key), false, Some(_)) => Ok(key),
            (None, _, Some(Err(last_error))) => Err(last_error),
            (None, _, Some(Ok(()))) => Err(OidcError::UnknownKey),
            (stale, _, None) => {
                let outcome = self.fetch().await;
                let now = self.clock.now_unix_millis();
                let Ok(mut cache) = self.cache.write() else {
                    return Err(OidcError::UnknownKey);
                };
                match outcome {
                    Ok(keys) => {
                        cache.last_attempt = Some((now, Ok(())));
                        cache.fetched_at = Some(now);
                        cache.keys = keys;
                        cache.keys.get(kid).cloned().ok_or(OidcError::UnknownKey)
                    }
                    Err(e) => {
                        cache.last_attempt = Some((now, Err(e.clone())));
                        // An issuer that is briefly down should not stop keys we already hold.
                        stale.ok_or(e)
                    }
                }
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, IssuerKey>, OidcError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let discovery = self.get_json(&discovery_url).await?;
        if discovery.get("signet_development_only") == Some(&Value::Bool(true))
            && !self.allow_development
        {
            return Err(OidcError::DevelopmentIssuer(self.config.name.clone()));
        }
        if discovery.get("issuer").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(self.unavailable("discovery document names a different issuer".into()));
        }
        let jwks_uri = match &self.config.jwks_uri {
            Some(uri) => uri.clone(),
            None => discovery
                .get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| self.unavailable("discovery document has no jwks_uri".into()))?
                .to_string(),
        };
        let mut problems = crate::config::Problems::default();
        crate::config::check_url(&jwks_uri, "jwks_uri", &mut problems);
        if !problems.list().is_empty() {
            return Err(
                self.unavailable("jwks_uri must be https:// (http:// only on loopback)".into())
            );
        }
        let jwks = self.get_json(&jwks_uri).await?;
        let entries = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| self.unavailable("JWKS has no keys array".into()))?;
        // Keys that cannot verify tokens (symmetric, encryption-only, unknown types) are left out
        // one by one, so one odd key does not disable the issuer.
        Ok(entries.iter().filter_map(issuer_key).collect())
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unavailable(format!("GET {url}: {}", without_url(&e))))?;
        if !response.status().is_success() {
            return Err(self.unavailable(format!("GET {url}: HTTP {}", response.status())));
        }
        // Read in chunks, so an oversized document is refused before it is all in memory.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unavailable(format!("GET {url}: {}", without_url(&e))))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(self.unavailable(format!("GET {url}: document too large")));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| self.unavailable(format!("GET {url}: not JSON")))
    }

    fn unavailable(&self, reason: String) -> OidcError {
        OidcError::IssuerUnavailable {
            issuer: self.config.name.clone(),
            reason,
        }
    }
}

/// Time from `at` to `now` (clock milliseconds); zero if the clock went back.
fn elapsed_since(at: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(0))
}

fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

/// Turns one JWKS entry into a verification key, if it is a signing key we accept.
fn issuer_key(entry: &Value) -> Option<(String, IssuerKey)> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let kid = jwk.common.key_id.clone()?;
    if let Some(usage) = entry.get("use").and_then(Value::as_str)
        && usage != "sig"
    {
        return None;
    }
    let inferred = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => JwtAlgorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => JwtAlgorithm::ES256,
            EllipticCurve::P384 => JwtAlgorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            JwtAlgorithm::EdDSA
        }
        // Symmetric ("oct") keys never verify ID tokens: that is the HMAC key-confusion attack.
        _ => return None,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => inferred,
        Some(declared) => {
            let declared: JwtAlgorithm = key_algorithm_name(declared)?.parse().ok()?;
            declared
        }
    };
    if !is_accepted_algorithm(algorithm) || !family_matches(algorithm, inferred) {
        return None;
    }
    let decoding_key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((
        kid,
        IssuerKey {
            decoding_key,
            algorithm,
        },
    ))
}

fn key_algorithm_name(algorithm: KeyAlgorithm) -> Option<&'static str> {
    Some(match algorithm {
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}

/// Whether a declared algorithm fits the key's type and curve.
fn family_matches(declared: JwtAlgorithm, inferred: JwtAlgorithm) -> bool {
    use JwtAlgorithm::*;
    match inferred {
        RS256 => matches!(declared, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        other => declared == other,
    }
}
