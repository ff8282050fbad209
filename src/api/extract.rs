//! Request extractors: the bearer token and a strict JSON body, each failing with the right code.
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::config::secret::Secret;

/// The `Authorization: Bearer` credential. Kept secret: never logged or echoed.
pub struct Bearer(pub Secret<String>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::InvalidToken("missing Authorization: Bearer header".into()))?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::InvalidToken("malformed Authorization header".into()))?;
        let (scheme, token) = text.split_once(' ').ok_or_else(|| {
            ApiError::InvalidToken("expected Authorization: Bearer <token>".into())
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::InvalidToken(
                "expected Authorization: Bearer <token>".into(),
            ));
        }
        Ok(Bearer(Secret::new(token.trim().to_string())))
    }
}

/// A JSON body: `application/json` required (415 otherwise), at most the body limit (413),
/// parsed strictly (400 with a message that never echoes the body's values).
pub struct JsonBody<T>(pub T);

/// Like `JsonBody`, but an empty body (no content) means `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidRequest("could not read the request body".into())
            }
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest(describe_json_error(&e)))
}

/// A message about a JSON error that names fields but not values (values may be secrets).
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let place = format!("line {}, column {}", error.line(), error.column());
    match error.classify() {
        Category::Data => {
            let text = error.to_string();
            let named = ["missing field", "unknown field", "duplicate field"]
                .iter()
                .any(|p| text.starts_with(p));
            if named && !text.contains('"') {
                // serde names fields in backticks; the text holds no input values.
                text
            } else {
                format!("a field has the wrong type or value ({place})")
            }
        }
        Category::Syntax | Category::Eof => format!("the body is not valid JSON ({place})"),
        Category::Io => "could not read the request body".to_string(),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&request) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body_bytes(request, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_content_type = request.headers().contains_key(header::CONTENT_TYPE);
        let json = is_json(&request);
        let bytes = body_bytes(request, state).await?;
        if bytes.is_empty() && (!has_content_type || json) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&bytes).map(OptionalJsonBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        key: String,
        count: u32,
    }

    #[test]
    fn json_errors_never_echo_values() {
        let secret = "eyJhbGciOiJSUzI1NiJ9.secret";
        let err = serde_json::from_str::<Body>(&format!(r#"{{"key":"k","count":"{secret}"}}"#))
            .expect_err("bad");
        let message = describe_json_error(&err);
        assert!(!message.contains(secret), "{message}");
        let err = serde_json::from_str::<Body>(r#"{"key":"k"}"#).expect_err("missing");
        assert_eq!(
            describe_json_error(&err),
            "missing field `count` at line 1 column 11"
        );
    }
}
