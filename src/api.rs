//! The HTTP API of API.md: the router, per-request audit logging, limits, and serving with
//! graceful shutdown.
pub mod error;
pub mod extract;
pub mod health;
pub mod jwks;
pub mod keys;
pub mod log;
pub mod sessions;
pub mod sign;
pub mod tiles;
pub mod trust;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::app::AppState;
use error::{ApiError, ErrorCode};

/// Largest request body accepted (API.md): larger gets 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most digests in one sign request (API.md): more gets 400.
pub const MAX_BATCH: usize = 1000;

/// The caller and decision of a request, filled in by handlers for the request's log line.
#[derive(Debug, Default, Clone)]
pub struct AuditFields {
    /// The caller's issuer (config name).
    pub issuer: Option<String>,
    /// The caller's subject.
    pub subject: Option<String>,
    /// The policy that matched.
    pub policy: Option<String>,
    /// Signatures made.
    pub signatures: Option<usize>,
    /// Time spent in the backend, microseconds.
    pub backend_us: Option<u64>,
}

/// A request's audit slot, shared between the logging middleware and the handler.
#[derive(Debug, Default, Clone)]
pub struct Audit(Arc<Mutex<AuditFields>>);

impl Audit {
    /// Updates the request's audit fields.
    pub fn record(&self, update: impl FnOnce(&mut AuditFields)) {
        if let Ok(mut fields) = self.0.lock() {
            update(&mut fields);
        }
    }

    fn snapshot(&self) -> AuditFields {
        self.0.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.server.request_timeout.get();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .route("/v1/keys", get(keys::list))
        .route("/v1/keys/{name}/rotate", post(keys::rotate))
        .route("/v1/keys/{name}/retire", post(keys::retire))
        .route("/v1/keys/{name}/revoke", post(keys::revoke))
        .route("/v1/trust", get(trust::trust))
        .route("/v1/sessions", post(sessions::create))
        .route("/v1/sessions/revoke", post(sessions::revoke))
        .route("/v1/sessions/current", delete(sessions::end))
        .route("/v1/sign", post(sign::sign))
        .route("/v1/log/checkpoint", get(log::checkpoint))
        .route("/v1/log/vkey", get(log::vkey))
        .route("/v1/log/entries", get(log::entries))
        .route("/v1/log/entries/{index}", get(log::entry))
        .route("/v1/log/proof/inclusion", get(log::inclusion))
        .route("/v1/log/proof/consistency", get(log::consistency))
        .route("/log/checkpoint", get(log::checkpoint))
        .route("/log/tile/{*path}", get(tiles::tile))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(timeout, audit_and_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Logs one line per request (outcome, caller, policy; never a token) and bounds its time.
async fn audit_and_limit(
    State(timeout): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let audit = Audit::default();
    request.extensions_mut().insert(audit.clone());
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let fields = audit.snapshot();
    let status = response.status().as_u16();
    let code = response.extensions().get::<ErrorCode>().map_or("", |c| c.0);
    let elapsed_us = started.elapsed().as_micros() as u64;
    tracing::info!(
        target: "signet::request",
        %method,
        path = %path,
        status,
        code,
        issuer = fields.issuer.as_deref().unwrap_or(""),
        subject = fields.subject.as_deref().unwrap_or(""),
        policy = fields.policy.as_deref().unwrap_or(""),
        signatures = fields.signatures.unwrap_or(0),
        backend_us = fields.backend_us.unwrap_or(0),
        elapsed_us,
        "request"
    );
    response
}

/// Serves `router` on `listener` until `shutdown` resolves; in-flight requests then get up to
/// `grace` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop_rx = stop_rx;
    tokio::select! {
        result = server.into_future() => result,
        _ = async {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within the shutdown timeout");
            Ok(())
        }
    }
}
