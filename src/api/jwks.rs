//! `GET /.well-known/jwks.json`: every active and verify-only key version, with `ETag`.
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// Verifiers may cache for five minutes; after a rotation they see the new key within that.
const CACHE_CONTROL: &str = "public, max-age=300";

/// Serves the JWKS; 304 when `If-None-Match` names the current `ETag`.
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let published = state.keys.published();
    let etag =
        HeaderValue::from_str(&published.etag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == published.etag
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response =
            axum::body::Body::from(axum::body::Bytes::from_owner(published.body.clone()))
                .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    response
}
