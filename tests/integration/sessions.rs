//! Sessions: policy decisions, clamping, expiry, ending, quota (including a concurrent race) and
//! persistence across a restart.
use serde_json::{Value, json};

use crate::harness::{Harness, problem, sha256_digest};

fn sign_body(data: &[u8]) -> Value {
    json!({"key": "model-signing", "digest": sha256_digest(data)})
}

#[tokio::test]
async fn policy_denial_is_403_and_says_nothing_specific() {
    let h = Harness::start().await;
    let token = h.issuer.mint_edited(|c| {
        c.insert("repository".into(), json!("evil/models"));
    });
    let response = h.open_session(&token, None).await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str()),
        (Some(403), Some("forbidden"))
    );
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        !detail.contains("repository") && !detail.contains("acme"),
        "{detail}"
    );

    let token = h.issuer.mint_edited(|c| {
        c.insert("ref".into(), json!("refs/heads/feature"));
    });
    assert_eq!(
        problem(h.open_session(&token, None).await).await,
        (403, "forbidden".into())
    );
}

#[tokio::test]
async fn unknown_and_ungranted_keys_are_refused_alike() {
    let h = Harness::start().await;
    let unknown = h
        .open_session(&h.issuer.mint_default(), Some(json!({"keys": ["ghost"]})))
        .await;
    let ungranted = h
        .open_session(
            &h.issuer.mint_default(),
            Some(json!({"keys": ["log-signing"]})),
        )
        .await;
    let unknown: Value = unknown.json().await.expect("json");
    let ungranted: Value = ungranted.json().await.expect("json");
    assert_eq!(unknown["code"], "forbidden");
    assert_eq!(
        unknown, ungranted,
        "the answer must not reveal which keys exist"
    );
}

#[tokio::test]
async fn ttl_and_quota_are_clamped_to_the_policy() {
    let h = Harness::start().await;
    let response = h
        .open_session(
            &h.issuer.mint_default(),
            Some(json!({"ttl_seconds": 86400, "max_signatures": 1_000_000})),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["max_signatures"], 100);
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let ttl = expires.unix_timestamp() - crate::harness::issuer::now() as i64;
    assert!((880..=900).contains(&ttl), "ttl {ttl} not clamped to 15m");
}

#[tokio::test]
async fn bad_session_requests_are_400() {
    let h = Harness::start().await;
    for body in [
        json!({"ttl_seconds": 0}),
        json!({"max_signatures": 0}),
        json!({"keys": []}),
        json!({"keys": "model-signing"}),
        json!({"unexpected": 1}),
    ] {
        let response = h
            .open_session(&h.issuer.mint_default(), Some(body.clone()))
            .await;
        assert_eq!(
            problem(response).await,
            (400, "invalid_request".into()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_expired_session_is_401_session_expired() {
    let h = Harness::in_process_with(|_| {}).await;
    let session = h.session_with(Some(json!({"ttl_seconds": 60}))).await;
    h.clock().advance(std::time::Duration::from_secs(59));
    let response = h.sign(&session, sign_body(b"in time")).await;
    assert_eq!(response.status().as_u16(), 200, "alive until its expiry");
    h.clock().advance(std::time::Duration::from_secs(1));
    let response = h.sign(&session, sign_body(b"late")).await;
    assert_eq!(problem(response).await, (401, "session_expired".into()));
}

#[tokio::test]
async fn an_ended_session_is_refused() {
    let h = Harness::start().await;
    let session = h.session().await;
    assert_eq!(
        h.sign(&session, sign_body(b"a")).await.status().as_u16(),
        200
    );
    let response = h
        .http
        .delete(h.daemon.url("/v1/sessions/current"))
        .bearer_auth(&session)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(
        problem(h.sign(&session, sign_body(b"b")).await).await,
        (401, "invalid_token".into())
    );
    let again = h
        .http
        .delete(h.daemon.url("/v1/sessions/current"))
        .bearer_auth(&session)
        .send()
        .await
        .expect("delete");
    assert_eq!(problem(again).await, (401, "invalid_token".into()));
}

#[tokio::test]
async fn an_unknown_session_token_is_401() {
    let h = Harness::start().await;
    let response = h
        .sign(
            "sgt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            sign_body(b"x"),
        )
        .await;
    assert_eq!(problem(response).await, (401, "invalid_token".into()));
    // An ID token is not a session token either.
    let response = h.sign(&h.issuer.mint_default(), sign_body(b"x")).await;
    assert_eq!(problem(response).await, (401, "invalid_token".into()));
}

#[tokio::test]
async fn a_spent_quota_is_429() {
    let h = Harness::start().await;
    let session = h.session_with(Some(json!({"max_signatures": 3}))).await;
    let digests: Vec<String> = (0..2).map(|i| sha256_digest(&[i])).collect();
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digests": digests}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    // Two left would be needed; one is left: the whole batch is refused, nothing is signed.
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digests": digests}),
        )
        .await;
    assert_eq!(problem(response).await, (429, "quota_exceeded".into()));
    assert_eq!(
        h.sign(&session, sign_body(b"last")).await.status().as_u16(),
        200
    );
    assert_eq!(
        problem(h.sign(&session, sign_body(b"over")).await).await,
        (429, "quota_exceeded".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_cannot_overspend_the_quota() {
    let h = Harness::start().await;
    let quota = 7;
    let session = h.session_with(Some(json!({"max_signatures": quota}))).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let (http, url, session, barrier) = (
            h.http.clone(),
            h.daemon.url("/v1/sign"),
            session.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            http.post(url)
                .bearer_auth(session)
                .json(&json!({"key": "model-signing", "digest": sha256_digest(&i.to_be_bytes())}))
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (ok, refused),
        (quota as usize, 40 - quota as usize),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn sessions_and_keys_survive_a_restart() {
    let h = Harness::start().await;
    let session = h.session().await;
    let before = h.jwks().await;
    let h = h.restart(|_| {}).await;
    assert_eq!(h.jwks().await, before, "same keys and kids after a restart");
    let response = h.sign(&session, sign_body(b"after restart")).await;
    assert_eq!(response.status().as_u16(), 200);
}

/// Claims too large to log are refused whole with 400 naming the limit, never cut (an
/// identity check must not run on cut claims): one claim over 512 bytes, or all of them over
/// 8 KiB. Claims within both open a session that signs; a token longer than any ID token is
/// refused naming that limit.
#[tokio::test]
async fn claims_too_large_to_log_are_400_never_truncated() {
    let h = Harness::start().await;
    let refused = async |token: String, limit: &str| {
        let response = h.open_session(&token, None).await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(limit)),
            "{body}"
        );
    };
    let padded = |bytes: usize| {
        h.issuer.mint_edited(|c| {
            c.insert("job_workflow_ref".into(), json!("w".repeat(bytes)));
        })
    };
    refused(padded(513), "at most 512 bytes").await;
    // Twenty claims of 500 bytes: each within the claim limit, together over 8 KiB.
    let many = h.issuer.mint_edited(|c| {
        for name in [
            "repository_id",
            "repository_owner",
            "ref_type",
            "sha",
            "workflow",
            "workflow_ref",
            "job_workflow_ref",
            "job_workflow_sha",
            "run_id",
            "run_number",
            "run_attempt",
            "environment",
            "event_name",
            "actor",
            "runner_environment",
            "project_path",
            "project_id",
            "namespace_path",
            "ref_path",
            "pipeline_id",
        ] {
            c.insert(name.into(), json!("v".repeat(500)));
        }
    });
    refused(many, "8192").await;

    let response = h.open_session(&padded(512), None).await;
    assert_eq!(response.status().as_u16(), 201);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let session = body["session_token"].as_str().expect("token");
    let response = h.sign(session, sign_body(b"long claims")).await;
    assert_eq!(response.status().as_u16(), 200);

    let response = h.open_session(&padded(20_000), None).await;
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "invalid_token", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("longer than 16384 bytes")),
        "{body}"
    );
}
