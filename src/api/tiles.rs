//! The log as a C2SP tlog-tiles log under `/log`: `checkpoint`, `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, for the latest published checkpoint's tree (and so for every
//! earlier one). Tiles never change, so they are cached for a year; the checkpoint is not.
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::tiles::TilePath;

/// `GET /log/tile/{*path}`.
pub async fn tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let tile = TilePath::parse(&path)
        .ok_or_else(|| ApiError::NotFound(format!("tile/{path} is not a tlog-tiles path")))?;
    let size = state
        .log
        .latest_checkpoint()
        .await?
        .map_or(0, |checkpoint| checkpoint.size);
    let bytes = state.log.tile(tile, size).await?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
