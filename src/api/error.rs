//! The one mapping from errors to RFC 9457 problem responses with API.md's stable `code`s.
//!
//! Policy: 4xx details say what the caller got wrong, never echoing a token or secret; 5xx details
//! go to the log and the caller gets a generic message. An issuer or backend that is down is 503,
//! never 401, so callers retry instead of giving up on a good token.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::algorithm::DigestError;
use crate::backend::BackendError;
use crate::keys::KeyError;
use crate::log::LogError;
use crate::oidc::OidcError;
use crate::policy::PolicyError;
use crate::session::SessionError;
use crate::signing::SignError;
use crate::store::StoreError;

/// The `code` of an error response, left in the response's extensions for the request log.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Every error the API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `invalid_token`.
    #[error("{0}")]
    InvalidToken(String),
    /// 401 `session_expired`.
    #[error("the session has expired")]
    SessionExpired,
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `unknown_key`.
    #[error("no key named {0:?}")]
    UnknownKey(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: another key change got there first or is under way.
    #[error("{0}")]
    Conflict(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// 415 `unsupported_media_type`.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`.
    #[error("the request body exceeds {} bytes", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// 429 `quota_exceeded`.
    #[error("the session's signature quota is spent ({remaining} left)")]
    QuotaExceeded {
        /// Signatures still available.
        remaining: u64,
    },
    /// 503 `backend_unavailable`: a key backend cannot serve.
    #[error("backend {backend} is unavailable")]
    BackendUnavailable {
        /// The backend's name (never its credentials).
        backend: String,
        /// For the log only.
        reason: String,
    },
    /// 503 `issuer_unavailable`: an OIDC issuer's discovery or JWKS cannot be fetched.
    #[error("issuer {issuer} is unavailable; retry later")]
    IssuerUnavailable {
        /// The issuer's name.
        issuer: String,
        /// For the log only.
        reason: String,
    },
    /// 503 `store_unavailable`.
    #[error("the store is unavailable; retry later")]
    StoreUnavailable(String),
    /// 503 `timeout`: the request took longer than `server.request_timeout`.
    #[error("the request timed out; retry later")]
    Timeout,
    /// 500 `internal`: the detail is logged, never returned.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'static str,
    detail: String,
}

impl ApiError {
    /// Status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::SessionExpired => (StatusCode::UNAUTHORIZED, "session_expired"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::UnknownKey(_) => (StatusCode::NOT_FOUND, "unknown_key"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ApiError::BackendUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable")
            }
            ApiError::IssuerUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "issuer_unavailable")
            }
            ApiError::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(detail) => tracing::error!(code, detail = %detail, "internal error"),
            ApiError::BackendUnavailable { backend, reason } => {
                tracing::warn!(code, backend = %backend, reason = %reason, "backend unavailable")
            }
            ApiError::IssuerUnavailable { issuer, reason } => {
                tracing::warn!(code, issuer = %issuer, reason = %reason, "issuer unavailable")
            }
            ApiError::StoreUnavailable(reason) => {
                tracing::error!(code, reason = %reason, "store unavailable")
            }
            _ => {}
        }
        let problem = Problem {
            kind: format!("urn:signet:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: self.to_string(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

impl From<OidcError> for ApiError {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::IssuerUnavailable { issuer, reason } => {
                ApiError::IssuerUnavailable { issuer, reason }
            }
            other => ApiError::InvalidToken(other.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        ApiError::Forbidden(error.to_string())
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        ApiError::InvalidRequest(error.to_string())
    }
}

impl From<DigestError> for ApiError {
    fn from(error: DigestError) -> Self {
        ApiError::InvalidRequest(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => ApiError::StoreUnavailable(reason),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        // Down, slow, refusing, a disabled key or a corrupted answer: the backend cannot serve
        // now, and the message names it (never its credentials).
        let backend = match &error {
            BackendError::Unavailable { backend, .. }
            | BackendError::Timeout { backend, .. }
            | BackendError::KeyMismatch { backend, .. }
            | BackendError::KeyUnusable { backend, .. }
            | BackendError::Malformed { backend, .. }
            | BackendError::Failed { backend, .. } => backend.clone(),
        };
        ApiError::BackendUnavailable {
            backend,
            reason: error.to_string(),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::OutOfRange(reason) => ApiError::InvalidRequest(reason),
            LogError::NotFound(reason) => ApiError::NotFound(reason),
            LogError::Store(e) => e.into(),
            LogError::Backend(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SignError> for ApiError {
    fn from(error: SignError) -> Self {
        match error {
            SignError::NoSession => ApiError::InvalidToken(error.to_string()),
            SignError::SessionExpired => ApiError::SessionExpired,
            SignError::Forbidden(reason) => ApiError::Forbidden(reason),
            SignError::InvalidDigest(reason) => ApiError::InvalidRequest(reason),
            SignError::QuotaExceeded { remaining } => ApiError::QuotaExceeded { remaining },
            rotated @ SignError::RotatedWhileSigning(_) => ApiError::Conflict(rotated.to_string()),
            SignError::Key(e) => e.into(),
            SignError::Backend(e) => e.into(),
            SignError::Log(e) => e.into(),
            SignError::Store(e) => e.into(),
            SignError::Internal(reason) => ApiError::Internal(reason),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::UnknownKey(name) => ApiError::UnknownKey(name),
            KeyError::Backend(e) => e.into(),
            KeyError::Store(e) => e.into(),
            KeyError::Log(e) => e.into(),
            conflict @ KeyError::Conflict { .. } => ApiError::Conflict(conflict.to_string()),
            bad @ KeyError::BadVersion { .. } => ApiError::InvalidRequest(bad.to_string()),
            log_key @ KeyError::LogKey(_) => ApiError::Forbidden(log_key.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
