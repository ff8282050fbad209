//! The development OIDC issuer of `signet dev`: discovery, a JWKS and a `/token` endpoint that
//! mints ES256 ID tokens for anyone who asks. Its discovery document says
//! `"signet_development_only": true`, and `signet serve` refuses issuers that say so.
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm as JwtAlgorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use serde_json::{Map, Value, json};

use crate::algorithm::Algorithm;
use crate::jwks::{Jwk, jwk_from_spki};

/// The audience of dev tokens, and of the dev config's issuer.
pub const DEV_AUDIENCE: &str = "signet";

struct Issuer {
    url: String,
    encoding_key: EncodingKey,
    jwk: Jwk,
}

/// A running development issuer.
#[derive(Debug)]
pub struct DevIssuer {
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub url: String,
}

/// Why the dev issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// The key could not be made.
    #[error("cannot create the development issuer's key: {0}")]
    Key(String),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl DevIssuer {
    /// Binds `address` (loopback) and serves the issuer in the background with a fresh key.
    pub async fn start(address: std::net::SocketAddr) -> Result<DevIssuer, DevIssuerError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| DevIssuerError::Listen { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| DevIssuerError::Listen { address, source })?;
        let url = format!("http://{bound}");
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pkcs8 = secret
            .to_pkcs8_der()
            .map_err(|e| DevIssuerError::Key(e.to_string()))?;
        let spki = secret
            .public_key()
            .to_public_key_der()
            .map_err(|e| DevIssuerError::Key(e.to_string()))?;
        let jwk = jwk_from_spki(spki.as_bytes(), Algorithm::ES256)
            .map_err(|e| DevIssuerError::Key(e.to_string()))?;
        let issuer = Arc::new(Issuer {
            url: url.clone(),
            encoding_key: EncodingKey::from_ec_der(pkcs8.as_bytes()),
            jwk,
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(issuer);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "development issuer stopped");
            }
        });
        Ok(DevIssuer { url })
    }
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    Json(json!({
        "issuer": issuer.url,
        "jwks_uri": format!("{}/jwks", issuer.url),
        "id_token_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "signet_development_only": true,
    }))
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    Json(json!({ "keys": [issuer.jwk] }))
}

/// `POST /token`, optionally with a JSON object of claims to add or override: a 10-minute
/// ID token shaped like a GitHub Actions token for `dev/models` on `refs/heads/main`.
async fn token(
    State(issuer): State<Arc<Issuer>>,
    body: axum::body::Bytes,
) -> Result<String, (axum::http::StatusCode, String)> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims: Map<String, Value> = json!({
        "iss": issuer.url,
        "aud": DEV_AUDIENCE,
        "sub": "repo:dev/models:ref:refs/heads/main",
        "repository": "dev/models",
        "ref": "refs/heads/main",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if !body.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(extra)) => claims.extend(extra),
            _ => {
                return Err((
                    axum::http::StatusCode::BAD_REQUEST,
                    "body must be a JSON object of claims\n".into(),
                ));
            }
        }
    }
    let mut header = Header::new(JwtAlgorithm::ES256);
    header.kid = Some(issuer.jwk.kid.clone());
    jsonwebtoken::encode(&header, &claims, &issuer.encoding_key).map_err(|e| {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e}\n"),
        )
    })
}
