//! `/v1/log/*`: the latest checkpoint, entries with their leaf hashes, and inclusion and
//! consistency proofs. Bad numbers are 400, sizes beyond the log 404.
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::StoredEntry;

/// Most entries in one range request.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

/// One entry as served.
#[derive(Debug, Serialize)]
pub struct EntryOut {
    index: u64,
    leaf_input: String,
    entry: Value,
    leaf_hash: String,
}

fn entry_out(entry: StoredEntry) -> EntryOut {
    EntryOut {
        index: entry.index,
        entry: serde_json::from_slice(&entry.leaf).unwrap_or(Value::Null),
        leaf_input: STANDARD.encode(&entry.leaf),
        leaf_hash: STANDARD.encode(entry.leaf_hash),
    }
}

/// The query parameters of a request, each parsed as a non-negative integer.
fn query_numbers(query: Option<String>, names: &[&'static str]) -> Result<Vec<u64>, ApiError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    names
        .iter()
        .map(|name| {
            let value = pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!("query parameter {name} is required"))
                })?;
            parse_number(name, value)
        })
        .collect()
}

fn parse_number(name: &str, value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidRequest(format!(
            "{name} must be a non-negative integer"
        )));
    }
    value
        .parse()
        .map_err(|_| ApiError::InvalidRequest(format!("{name} is out of range")))
}

/// `GET /v1/log/checkpoint`.
pub async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let checkpoint = state
        .log
        .latest_checkpoint()
        .await?
        .ok_or_else(|| ApiError::NotFound("no checkpoint has been signed yet".into()))?;
    let mut response = checkpoint.note.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /v1/log/vkey`: the log key as verifiers pin it (C2SP vkey).
pub async fn vkey(State(state): State<AppState>) -> Response {
    let mut response = format!("{}\n", state.log_key.to_vkey()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `GET /v1/log/entries/{index}`.
pub async fn entry(
    State(state): State<AppState>,
    Path(index): Path<String>,
) -> Result<Json<EntryOut>, ApiError> {
    let index = parse_number("index", &index)?;
    let size = state.log.size().await?;
    if index >= size {
        return Err(ApiError::NotFound(format!("the log has {size} entries")));
    }
    let entry = state
        .log
        .entries(index, index + 1)
        .await
        .map_err(|_| ApiError::NotFound(format!("entry {index} is missing")))?
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("entry {index} is missing")))?;
    Ok(Json(entry_out(entry)))
}

/// `GET /v1/log/entries?start=S&end=E`: up to 1000 entries (an addition to API.md, for
/// verifiers that recompute the whole tree).
pub async fn entries(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<EntryOut>>, ApiError> {
    let numbers = query_numbers(query, &["start", "end"])?;
    let (start, end) = (numbers[0], numbers[1]);
    if start >= end || end - start > MAX_ENTRIES_PER_REQUEST {
        return Err(ApiError::InvalidRequest(format!(
            "need start < end with at most {MAX_ENTRIES_PER_REQUEST} entries"
        )));
    }
    let size = state.log.size().await?;
    if end > size {
        return Err(ApiError::NotFound(format!("the log has {size} entries")));
    }
    let entries = state
        .log
        .entries(start, end)
        .await
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    Ok(Json(entries.into_iter().map(entry_out).collect()))
}

/// An inclusion proof.
#[derive(Debug, Serialize)]
pub struct InclusionOut {
    index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

/// `GET /v1/log/proof/inclusion?index=I&tree_size=N`.
pub async fn inclusion(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<InclusionOut>, ApiError> {
    let numbers = query_numbers(query, &["index", "tree_size"])?;
    let (index, tree_size) = (numbers[0], numbers[1]);
    let proof = state.log.inclusion_proof(index, tree_size).await?;
    Ok(Json(InclusionOut {
        index,
        tree_size,
        hashes: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    }))
}

/// A consistency proof.
#[derive(Debug, Serialize)]
pub struct ConsistencyOut {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

/// `GET /v1/log/proof/consistency?from=M&to=N`.
pub async fn consistency(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ConsistencyOut>, ApiError> {
    let numbers = query_numbers(query, &["from", "to"])?;
    let (from, to) = (numbers[0], numbers[1]);
    let proof = state.log.consistency_proof(from, to).await?;
    Ok(Json(ConsistencyOut {
        from,
        to,
        hashes: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    }))
}
