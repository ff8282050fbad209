//! Request limits and hostile input: 413, 415, 404/405 problems, no 5xx on garbage, and no token
//! or PIN in any log line.
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::harness::softhsm::PIN;
use crate::harness::{Harness, problem, sha256_digest};

#[tokio::test]
async fn an_oversized_body_is_413() {
    let h = Harness::start().await;
    let session = h.session().await;
    let padding = "a".repeat(1024 * 1024 + 10);
    let response = h
        .http
        .post(h.daemon.url("/v1/sign"))
        .bearer_auth(&session)
        .header("content-type", "application/json")
        .body(format!(r#"{{"key":"model-signing","digest":"{padding}"}}"#))
        .send()
        .await
        .expect("post");
    assert_eq!(problem(response).await, (413, "payload_too_large".into()));
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let h = Harness::start().await;
    let session = h.session().await;
    let body = json!({"key": "model-signing", "digest": sha256_digest(b"x")}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = h
            .http
            .post(h.daemon.url("/v1/sign"))
            .bearer_auth(&session)
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("post");
        assert_eq!(
            problem(response).await,
            (415, "unsupported_media_type".into()),
            "{content_type:?}"
        );
    }
    let response = h
        .http
        .post(h.daemon.url("/v1/sessions"))
        .bearer_auth(h.issuer.mint_default())
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        problem(response).await,
        (415, "unsupported_media_type".into())
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let h = Harness::start().await;
    let response = h
        .http
        .get(h.daemon.url("/v1/nothing"))
        .send()
        .await
        .expect("get");
    assert_eq!(problem(response).await, (404, "not_found".into()));
    let response = h
        .http
        .get(h.daemon.url("/v1/sign"))
        .send()
        .await
        .expect("get");
    assert_eq!(problem(response).await, (405, "method_not_allowed".into()));
}

#[tokio::test]
async fn garbage_never_gets_a_5xx() {
    let h = Harness::start().await;
    let session = h.session().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5167_4e37);
    let paths = [
        "/v1/sign",
        "/v1/sessions",
        "/v1/sessions/current",
        "/v1/keys",
        "/.well-known/jwks.json",
    ];
    for round in 0..200 {
        let path = paths[round % paths.len()];
        let len = rng.gen_range(0..512);
        let mut body: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        if round % 3 == 0 {
            // Near-valid JSON with odd values exercises the typed parsing, not just the lexer.
            body = json!({"key": ["x"], "digest": {"a": round}, "digests": [round, null], "ttl_seconds": -1})
                .to_string()
                .into_bytes();
        }
        let bearer = match round % 4 {
            0 => session.clone(),
            1 => h.issuer.mint_default(),
            2 => String::from_utf8_lossy(&body)
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect(),
            _ => "x".into(),
        };
        let method = if round % 5 == 0 {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let mut request = h
            .http
            .request(method, h.daemon.url(path))
            .header("content-type", "application/json")
            .body(body);
        if !bearer.is_empty() {
            request = request.bearer_auth(bearer);
        }
        let status = request
            .send()
            .await
            .expect("daemon answers")
            .status()
            .as_u16();
        assert!(status < 500, "round {round}: {path} gave {status}");
    }
    let health = h
        .http
        .get(h.daemon.url("/healthz"))
        .send()
        .await
        .expect("alive");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn logs_never_contain_tokens_or_the_pin() {
    let h = Harness::start().await;
    let id_token = h.issuer.mint_default();
    let response = h.open_session(&id_token, None).await;
    let session: serde_json::Value = response.json().await.expect("json");
    let session = session["session_token"]
        .as_str()
        .expect("token")
        .to_string();
    let _ = h
        .sign(
            &session,
            json!({"key": "model-signing", "digest": sha256_digest(b"x")}),
        )
        .await;
    let _ = h
        .sign(
            &session,
            json!({"key": "model-signing", "digest": "sha256:bad"}),
        )
        .await;
    let _ = h
        .sign(
            &session,
            json!({"key": "ghost", "digest": sha256_digest(b"x")}),
        )
        .await;
    let expired = h.issuer.mint_edited(|c| {
        c.insert("exp".into(), json!(1));
    });
    let _ = h.open_session(&expired, None).await;
    let _ = h
        .sign(
            &format!("{session}x"),
            json!({"key": "model-signing", "digest": sha256_digest(b"x")}),
        )
        .await;
    let _ = h
        .http
        .delete(h.daemon.url("/v1/sessions/current"))
        .bearer_auth(&session)
        .send()
        .await;
    let logs = h.daemon.logs();
    assert!(logs.contains("request"), "request lines are logged: {logs}");
    assert!(
        logs.contains("repo:acme/models"),
        "the caller's subject is logged"
    );
    assert!(
        logs.contains("policy=\"release\""),
        "the policy is logged: {logs}"
    );
    let id_signature = id_token.rsplit('.').next().expect("signature part");
    for secret in [
        id_token.as_str(),
        id_signature,
        session.as_str(),
        &session[4..],
        PIN,
        expired.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}
