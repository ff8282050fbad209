//! Signing: every algorithm, verified under the JWKS key by independent code and by OpenSSL;
//! batches; digest and key errors; graceful shutdown with requests in flight.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Harness, problem, sha256_digest};
use crate::verify::{find_jwk, openssl_verify, verify_signature};

#[tokio::test]
async fn es256_signature_verifies_under_the_jwks_key_with_openssl() {
    let h = Harness::start().await;
    let session = h.session().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.bin");
    std::fs::write(&model, b"weights of a very small model").expect("write");
    let digest = sha256_digest(&std::fs::read(&model).expect("read"));
    let response = h
        .sign(&session, json!({"key": "model-signing", "digest": digest}))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    let signed = &body["signatures"][0];
    assert_eq!(signed["key"], "model-signing");
    assert_eq!(signed["key_version"], 1);
    assert_eq!(signed["algorithm"], "ES256");
    assert_eq!(signed["digest"], json!(digest));
    let jwks = h.jwks().await;
    verify_signature(&jwks, signed);
    let signature = STANDARD
        .decode(signed["signature"].as_str().expect("sig"))
        .expect("b64");
    let jwk = find_jwk(&jwks, signed["key_id"].as_str().expect("kid"));
    assert!(
        openssl_verify(jwk, &model, &signature),
        "openssl dgst -verify refused it"
    );
    // And a signature is bound to its digest: another file does not verify.
    let other = dir.path().join("other.bin");
    std::fs::write(&other, b"tampered weights").expect("write");
    assert!(!openssl_verify(jwk, &other, &signature));
}

async fn sign_and_verify_with(algorithm: &str, hash: &str) {
    let h = Harness::start_with(|c| c.add_key("other", algorithm)).await;
    let session = h.session_with(Some(json!({"keys": ["other"]}))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.bin");
    std::fs::write(&model, format!("model for {algorithm}")).expect("write");
    let data = std::fs::read(&model).expect("read");
    let digest = if hash == "sha384" {
        use sha2::Digest;
        format!("sha384:{}", hex::encode(sha2::Sha384::digest(&data)))
    } else {
        sha256_digest(&data)
    };
    let response = h
        .sign(&session, json!({"key": "other", "digest": digest}))
        .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let body: Value = response.json().await.expect("json");
    let signed = &body["signatures"][0];
    assert_eq!(signed["algorithm"], algorithm);
    let jwks = h.jwks().await;
    verify_signature(&jwks, signed);
    let jwk = find_jwk(&jwks, signed["key_id"].as_str().expect("kid"));
    let signature = STANDARD
        .decode(signed["signature"].as_str().expect("sig"))
        .expect("b64");
    assert!(
        openssl_verify(jwk, &model, &signature),
        "openssl refused {algorithm}"
    );
}

#[tokio::test]
async fn es384_signature_verifies() {
    sign_and_verify_with("ES384", "sha384").await;
}

#[tokio::test]
async fn ps256_signature_verifies() {
    sign_and_verify_with("PS256", "sha256").await;
}

#[tokio::test]
async fn rs256_signature_verifies() {
    sign_and_verify_with("RS256", "sha256").await;
}

#[tokio::test]
async fn a_batch_is_signed_in_order() {
    let h = Harness::start().await;
    let session = h.session().await;
    let digests: Vec<String> = (0..50u32)
        .map(|i| sha256_digest(&i.to_be_bytes()))
        .collect();
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digests": digests}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    let signatures = body["signatures"].as_array().expect("array");
    assert_eq!(signatures.len(), 50);
    let jwks = h.jwks().await;
    for (signed, digest) in signatures.iter().zip(&digests) {
        assert_eq!(signed["digest"], json!(digest));
        verify_signature(&jwks, signed);
    }
}

#[tokio::test]
async fn an_unknown_key_is_404() {
    let h = Harness::start().await;
    let session = h.session().await;
    let response = h
        .sign(
            &session,
            json!({"key": "ghost", "digest": sha256_digest(b"x")}),
        )
        .await;
    assert_eq!(problem(response).await, (404, "unknown_key".into()));
}

#[tokio::test]
async fn a_key_outside_the_session_is_403() {
    let h = Harness::start().await;
    let session = h.session().await;
    // The log key exists but no session may use it.
    let response = h
        .sign(
            &session,
            json!({"key": "log-signing", "digest": sha256_digest(b"x")}),
        )
        .await;
    assert_eq!(problem(response).await, (403, "forbidden".into()));
}

#[tokio::test]
async fn malformed_digests_are_400() {
    let h = Harness::start().await;
    let session = h.session().await;
    for digest in [
        json!("abc"),
        json!("sha256:xyz"),
        json!(format!("sha256:{}", "0".repeat(63))),
        json!(format!("sha256:{}", "g".repeat(64))),
        json!(format!("md5:{}", "0".repeat(32))),
        json!(12),
        json!(null),
    ] {
        let response = h
            .sign(&session, json!({"key": "model-signing", "digest": digest}))
            .await;
        assert_eq!(
            problem(response).await,
            (400, "invalid_request".into()),
            "{digest}"
        );
    }
    let both = json!({"key": "model-signing", "digest": sha256_digest(b"a"), "digests": [sha256_digest(b"b")]});
    assert_eq!(
        problem(h.sign(&session, both).await).await,
        (400, "invalid_request".into())
    );
    let empty = json!({"key": "model-signing", "digests": []});
    assert_eq!(
        problem(h.sign(&session, empty).await).await,
        (400, "invalid_request".into())
    );
}

#[tokio::test]
async fn a_digest_of_the_wrong_algorithm_is_400() {
    let h = Harness::start().await;
    let session = h.session().await;
    let digest = format!("sha384:{}", "ab".repeat(48));
    let response = h
        .sign(&session, json!({"key": "model-signing", "digest": digest}))
        .await;
    assert_eq!(problem(response).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn a_batch_over_1000_is_400() {
    let h = Harness::start().await;
    let session = h.session().await;
    let digests: Vec<String> = (0..1001u32)
        .map(|i| sha256_digest(&i.to_be_bytes()))
        .collect();
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digests": digests}),
        )
        .await;
    assert_eq!(problem(response).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn refused_requests_spend_no_quota() {
    let h = Harness::start().await;
    let session = h.session_with(Some(json!({"max_signatures": 1}))).await;
    let bad = json!({"key": "model-signing", "digest": "sha256:nothex"});
    assert_eq!(
        problem(h.sign(&session, bad).await).await,
        (400, "invalid_request".into())
    );
    let good = json!({"key": "model-signing", "digest": sha256_digest(b"x")});
    assert_eq!(h.sign(&session, good).await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_request_over_the_timeout_gets_503() {
    let h = Harness::start_with(|c| {
        c.request_timeout = "1s".into();
        c.max_signatures = 5000;
        c.extra = "\n[[keys]]\nname = \"slow\"\nbackend = \"hsm\"\nalgorithm = \"RS256\"\nrsa_bits = 4096\n".into();
        c.policy_keys.push("slow".into());
    })
    .await;
    let session = h.session_with(Some(json!({"keys": ["slow"]}))).await;
    // A thousand RSA-4096 signatures take SoftHSM several seconds.
    let digests: Vec<String> = (0..1000u32)
        .map(|i| sha256_digest(&i.to_be_bytes()))
        .collect();
    let started = std::time::Instant::now();
    let response = h
        .sign(&session, json!({"key": "slow", "digests": digests}))
        .await;
    assert_eq!(problem(response).await, (503, "timeout".into()));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered at the timeout, not after the work"
    );
}

/// The store held by another process (a backup tool's exclusive lock, say): a request that must
/// write gets 503 `store_unavailable` once the store's busy timeout passes, returns nothing it
/// could not log, and the daemon serves again as soon as the lock is released, without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_is_503_then_recovers() {
    let h = Harness::start().await;
    let session = h.session().await;
    let db = h.hsm.dir.path().join("signet.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let connection = rusqlite::Connection::open(&db).expect("open the store");
        connection
            .execute_batch("BEGIN EXCLUSIVE")
            .expect("take the write lock");
        locked_tx.send(()).expect("tell the test");
        let _ = release_rx.recv();
        connection.execute_batch("COMMIT").expect("release");
    });
    locked_rx.recv().expect("locked");
    let digest = json!({"key": "model-signing", "digest": sha256_digest(b"while locked")});
    assert_eq!(
        problem(h.sign(&session, digest.clone()).await).await,
        (503, "store_unavailable".into())
    );
    let response = h.open_session(&h.issuer.mint_default(), None).await;
    assert_eq!(problem(response).await, (503, "store_unavailable".into()));

    release_tx.send(()).expect("release");
    holder.join().expect("lock holder");
    let response = h.sign(&session, digest).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    // Nothing from the refused request reached the log: the one signature logged is this one.
    let events = crate::rotation::log_events(&h).await;
    let logged: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "signature")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(logged.len(), 1, "{events:?}");
    assert_eq!(body["signatures"][0]["log_index"], json!(logged[0]));
}
