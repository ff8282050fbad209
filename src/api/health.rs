//! `/healthz` (liveness) and `/readyz` (the store and every backend answer).
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::AppState;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the store and every backend in use answer, else 503 naming them.
/// The endpoint is unauthenticated, so the answer names components only; why one failed
/// (which can name an account, a role or an address) goes to the daemon's log.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut failing = Vec::new();
    match tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store is failing");
            failing.push(json!({"component": "store", "error": "unavailable"}))
        }
        Err(_) => failing.push(json!({"component": "store", "error": "timed out"})),
    }
    if let Some(reason) = state.log.halted() {
        // The reason (which names sizes and roots) is in the daemon's log already.
        tracing::warn!(reason = %reason, "readiness: checkpoint signing has stopped");
        failing.push(json!({"component": "log", "error": "inconsistent with the signed checkpoints: checkpoint signing stopped"}));
    }
    let mut seen = Vec::new();
    for key in state.keys.all() {
        let backend = &key.backend;
        if seen.contains(&backend.name()) {
            continue;
        }
        seen.push(backend.name());
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, backend.health()).await;
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => {
                tracing::warn!(backend = %backend.name(), error = %e, "readiness: a backend is failing");
                "unavailable"
            }
            Err(_) => "timed out",
        };
        failing.push(json!({"component": format!("backend:{}", backend.name()), "error": error}));
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failing": failing})),
        )
    }
}
