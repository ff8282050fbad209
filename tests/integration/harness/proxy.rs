//! An HTTP proxy in front of a real backend, on a fixed loopback port, that the test can take
//! down (connections refused), make hang (connections accepted, never answered), or make
//! corrupt signatures in otherwise well-formed answers.
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::server::RestartableServer;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

const PASS: u8 = 0;
const CORRUPT: u8 = 1;
const HANG: u8 = 2;

struct Shared {
    upstream: String,
    mode: AtomicU8,
    http: reqwest::Client,
}

/// The proxy; `url` stays the same across `stop` and `restart`.
pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    server: RestartableServer,
}

impl Proxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:8200`) on a free port.
    pub async fn start(upstream: &str) -> Proxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            mode: AtomicU8::new(PASS),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let server = RestartableServer::start(app).await;
        Proxy {
            url: server.url.clone(),
            shared,
            server,
        }
    }

    /// Closes the port: new connections are refused, as when the backend is down.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Listens on the same port again.
    pub async fn restart(&mut self) {
        self.server.restart().await;
    }

    /// Answers keep their shape, but every signature in them has one character changed.
    pub fn set_corrupt(&self, on: bool) {
        self.shared
            .mode
            .store(if on { CORRUPT } else { PASS }, Ordering::SeqCst);
    }

    /// Requests are accepted and never answered.
    pub fn set_hang(&self, on: bool) {
        self.shared
            .mode
            .store(if on { HANG } else { PASS }, Ordering::SeqCst);
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mode = shared.mode.load(Ordering::SeqCst);
    if mode == HANG {
        std::future::pending::<()>().await;
    }
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut outgoing = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.send().await else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .expect("response");
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap_or_default().to_vec();
    if mode == CORRUPT
        && let Ok(mut json) = serde_json::from_slice::<Value>(&bytes)
    {
        corrupt_signatures(&mut json, false);
        bytes = serde_json::to_vec(&json).expect("json");
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(bytes)).expect("response")
}

/// Changes one base64 character in the middle of every string under a key named like
/// "signature": still well-formed, no longer the backend's signature.
fn corrupt_signatures(value: &mut Value, under_signature: bool) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                corrupt_signatures(inner, key.eq_ignore_ascii_case("signature"));
            }
        }
        Value::Array(items) => {
            for item in items {
                corrupt_signatures(item, under_signature);
            }
        }
        Value::String(text) if under_signature && text.len() > 16 => {
            let middle = text.len() / 2;
            let mut chars: Vec<char> = text.chars().collect();
            chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
            *text = chars.into_iter().collect();
        }
        _ => {}
    }
}
