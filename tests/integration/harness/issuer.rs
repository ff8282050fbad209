//! An OIDC issuer of the tests' own: discovery, a JWKS, and tokens minted with chosen claims and
//! headers (including malicious ones). It can be told to fail, and counts JWKS fetches.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use serde_json::{Value, json};

pub const AUDIENCE: &str = "signet";

struct Shared {
    url: String,
    jwks: std::sync::Mutex<Value>,
    jwks_fetches: AtomicU64,
    down: AtomicBool,
    hung: AtomicBool,
    /// Discovery requests held by `hung` so far.
    held: AtomicU64,
    development_only: AtomicBool,
    /// The clock token times are taken from, when the daemon runs on a manual one.
    clock: std::sync::OnceLock<Arc<dyn signet::clock::Clock>>,
}

/// The running issuer.
pub struct TestIssuer {
    pub url: String,
    pub kid: String,
    pub key: p256::ecdsa::SigningKey,
    shared: Arc<Shared>,
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn jwk_of(key: &p256::ecdsa::SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")),
    })
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl TestIssuer {
    /// Starts on a free loopback port.
    pub async fn start() -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind issuer");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let kid = "test-key-1".to_string();
        let shared = Arc::new(Shared {
            url: url.clone(),
            jwks: std::sync::Mutex::new(json!({ "keys": [jwk_of(&key, &kid)] })),
            jwks_fetches: AtomicU64::new(0),
            down: AtomicBool::new(false),
            hung: AtomicBool::new(false),
            held: AtomicU64::new(0),
            development_only: AtomicBool::new(false),
            clock: std::sync::OnceLock::new(),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestIssuer {
            url,
            kid,
            key,
            shared,
        }
    }

    /// Makes every endpoint answer 503 (or work again).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Makes discovery hang for a minute before answering (or answer again at once).
    pub fn set_hung(&self, hung: bool) {
        self.shared.hung.store(hung, Ordering::SeqCst);
    }

    /// Waits until a discovery request is being held by `set_hung`.
    pub async fn hung_request_arrived(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.shared.held.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no request reached the hung issuer"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Makes discovery announce a development-only issuer, like `signet dev`'s.
    pub fn set_development_only(&self, yes: bool) {
        self.shared.development_only.store(yes, Ordering::SeqCst);
    }

    /// JWKS fetches so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Publishes another key in the JWKS.
    pub fn add_jwk(&self, jwk: Value) {
        let mut jwks = self.shared.jwks.lock().expect("jwks lock");
        jwks["keys"].as_array_mut().expect("keys").push(jwk);
    }

    /// The public JWK of a signing key.
    pub fn jwk(key: &p256::ecdsa::SigningKey, kid: &str) -> Value {
        jwk_of(key, kid)
    }

    /// Takes token times from `clock` from now on (the in-process daemon's).
    pub fn follow_clock(&self, clock: Arc<dyn signet::clock::Clock>) {
        let _ = self.shared.clock.set(clock);
    }

    /// Now, on the clock tokens are minted by.
    pub fn now(&self) -> u64 {
        match self.shared.clock.get() {
            Some(clock) => u64::try_from(clock.now_unix()).expect("time after 1970"),
            None => now(),
        }
    }

    /// Claims of a GitHub Actions job on acme/models, main branch, valid for five minutes.
    pub fn default_claims(&self) -> Value {
        let now = self.now();
        json!({
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "repo:acme/models:ref:refs/heads/main",
            "repository": "acme/models",
            "ref": "refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        })
    }

    /// A valid token with the default claims.
    pub fn mint_default(&self) -> String {
        self.mint(&self.default_claims())
    }

    /// A token with `claims`, signed ES256 by the issuer's key.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with(
            &json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
            claims,
            &self.key,
        )
    }

    /// A token with the default claims changed by `edit`.
    pub fn mint_edited(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut claims = self.default_claims();
        edit(claims.as_object_mut().expect("object"));
        self.mint(&claims)
    }

    /// A token with any header and claims, signed ES256 by `key`.
    pub fn mint_with(
        &self,
        header: &Value,
        claims: &Value,
        key: &p256::ecdsa::SigningKey,
    ) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    /// A token with any header and claims and a given signature.
    pub fn unsigned_with(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(signature)
        )
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    if shared.hung.load(Ordering::SeqCst) {
        shared.held.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut doc = json!({
        "issuer": shared.url,
        "jwks_uri": format!("{}/jwks", shared.url),
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    if shared.development_only.load(Ordering::SeqCst) {
        doc["signet_development_only"] = json!(true);
    }
    Json(doc).into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let jwks = shared.jwks.lock().expect("jwks lock").clone();
    Json(jwks).into_response()
}
