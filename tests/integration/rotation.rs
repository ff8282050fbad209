//! Key rotation on SoftHSM: by an admin through the API and the CLI, break-glass with
//! `--config`, on schedule, under load, with a crash in the middle, and emergency retirement.
//! (The same rotation runs on every backend in the conformance suite.)
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonConfig, Harness, problem, sha256_digest};
use crate::verify::verify_signature;
use crate::workflow::signet;

/// An admin's ID token (repository acme/security has an admin policy for model-signing).
pub fn admin_token(h: &Harness) -> String {
    h.issuer.mint_edited(|c| {
        c.insert("repository".into(), json!("acme/security"));
    })
}

/// `POST /v1/keys/{name}/rotate` with `token`.
pub async fn rotate(h: &Harness, name: &str, token: &str) -> reqwest::Response {
    h.http
        .post(h.daemon.url(&format!("/v1/keys/{name}/rotate")))
        .bearer_auth(token)
        .send()
        .await
        .expect("POST rotate")
}

async fn sign_one(h: &Harness, session: &str, text: &str) -> Value {
    let response = h
        .sign(
            session,
            json!({"key": "model-signing", "digest": sha256_digest(text.as_bytes())}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["signatures"][0].clone()
}

fn versions(keys: &Value, name: &str) -> Vec<(u64, String)> {
    keys.as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == name)
        .expect("key listed")["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("version"),
                v["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

/// Every log entry, parsed.
pub async fn log_events(h: &Harness) -> Vec<Value> {
    // The log's size: the first index that is not there (entries past the latest checkpoint
    // count too).
    let exists = |i: u64| {
        let url = h.daemon.url(&format!("/v1/log/entries/{i}"));
        let http = h.http.clone();
        async move { http.get(url).send().await.expect("entry").status().as_u16() == 200 }
    };
    let mut high = 1;
    while exists(high).await {
        high *= 2;
    }
    let mut low = high / 2;
    while low + 1 < high {
        let middle = (low + high) / 2;
        if exists(middle).await {
            low = middle;
        } else {
            high = middle;
        }
    }
    let size = high;
    let mut events = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + 1000).min(size);
        let entries = h
            .get_json(&format!("/v1/log/entries?start={start}&end={end}"))
            .await;
        for entry in entries.as_array().expect("entries") {
            let leaf = STANDARD
                .decode(entry["leaf_input"].as_str().expect("leaf"))
                .expect("base64");
            events.push(serde_json::from_slice(&leaf).expect("JSON leaf"));
        }
        start = end;
    }
    assert_eq!(events.len() as u64, size);
    events
}

fn with_rotation(config: &mut DaemonConfig, grace: &str) {
    config.add_admin_policy("acme/security", &["model-signing"]);
    config.key_lines("model-signing", &format!("grace_period = \"{grace}\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_rotates_old_signatures_stay_verifiable_then_the_old_version_retires() {
    let h = Harness::in_process_with(|c| with_rotation(c, "1h")).await;
    let session = h.session().await;
    let before = sign_one(&h, &session, "before").await;
    assert_eq!(before["key_version"], 1);
    let jwks_before = h.jwks().await;
    let etag_before = h
        .http
        .get(h.daemon.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .headers()
        .get("etag")
        .cloned();

    // Through the CLI, with an admin's token in a file.
    let token_file = h.hsm.dir.path().join("admin-token");
    std::fs::write(&token_file, admin_token(&h)).expect("token");
    let token_path = token_file.display().to_string();
    let (code, stdout, stderr) = signet(
        &[
            "keys",
            "rotate",
            "model-signing",
            "--server",
            &h.daemon.base_url,
            "--token-file",
            &token_path,
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("version 2"), "{stdout}");

    // The JWKS changed at once (new ETag) and holds both versions.
    let response = h
        .http
        .get(h.daemon.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_ne!(response.headers().get("etag").cloned(), etag_before);
    let jwks: Value = response.json().await.expect("JSON");
    assert_eq!(kids(&jwks).len(), kids(&jwks_before).len() + 1);
    let after = sign_one(&h, &session, "after").await;
    assert_eq!(after["key_version"], 2);
    assert_ne!(after["key_id"], before["key_id"]);
    verify_signature(&jwks, &after);
    // A verifier holding the JWKS fetched before the rotation still checks older signatures,
    // and so does one fetching it now.
    verify_signature(&jwks_before, &before);
    verify_signature(&jwks, &before);
    assert_eq!(
        versions(&h.get_json("/v1/keys").await, "model-signing"),
        [(1, "verify-only".to_string()), (2, "active".to_string())]
    );

    // After the grace period the scheduler retires version 1: gone from the JWKS, kept in
    // /v1/keys and in the log.
    h.clock().advance(Duration::from_secs(3600));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = versions(&h.get_json("/v1/keys").await, "model-signing");
        if listed[0].1 == "retired" {
            break;
        }
        assert!(Instant::now() < deadline, "not retired: {listed:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let jwks = h.jwks().await;
    assert!(!kids(&jwks).contains(&before["key_id"].as_str().expect("kid").to_string()));
    assert!(kids(&jwks).contains(&after["key_id"].as_str().expect("kid").to_string()));
    let events = log_events(&h).await;
    let rotated = events
        .iter()
        .find(|e| e["kind"] == "key_rotated")
        .expect("key_rotated logged");
    assert_eq!(rotated["key_version"], 2);
    assert_eq!(rotated["previous_version"], 1);
    assert!(
        rotated["subject"].as_str().is_some_and(|s| !s.is_empty()),
        "names who: {rotated}"
    );
    assert_eq!(rotated["policy"], "key-admins-acme-security");
    let retired = events
        .iter()
        .find(|e| e["kind"] == "key_retired")
        .expect("key_retired logged");
    assert_eq!(retired["key_version"], 1);
    assert_eq!(retired["actor"], "scheduler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_of_that_key_may_rotate() {
    let h = Harness::start_with(|c| {
        c.add_key("other-key", "ES256");
        c.add_admin_policy("acme/security", &["model-signing"]);
    })
    .await;
    // A signer's token: 403.
    let (status, code) = problem(rotate(&h, "model-signing", &h.issuer.mint_default()).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // An admin of model-signing cannot rotate other-key.
    let (status, code) = problem(rotate(&h, "other-key", &admin_token(&h)).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // Nor a key that does not exist (no probing for names).
    let (status, code) = problem(rotate(&h, "no-such-key", &admin_token(&h)).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // A session token is not an ID token.
    let session = h.session().await;
    let (status, code) = problem(rotate(&h, "model-signing", &session).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    let response = rotate(&h, "model-signing", &admin_token(&h)).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["version"], 2);
    assert_eq!(body["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_never_fails_a_request_nor_names_an_inactive_version() {
    let h = Harness::start_with(|c| {
        with_rotation(c, "1h");
        c.max_signatures = 100_000;
        c.max_ttl = "1h".into();
    })
    .await;
    let session = h
        .session_with(Some(json!({"max_signatures": 100_000})))
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, url, session, stop) = (
            h.http.clone(),
            h.daemon.url("/v1/sign"),
            session.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut signed = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let digest = sha256_digest(format!("client {client} request {i}").as_bytes());
                let response = http
                    .post(&url)
                    .bearer_auth(&session)
                    .json(&json!({"key": "model-signing", "digest": digest}))
                    .send()
                    .await
                    .expect("POST sign");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("JSON");
                assert_eq!(status, 200, "a request failed during rotation: {body}");
                signed.push(body["signatures"][0].clone());
            }
            signed
        }));
    }
    let admin = admin_token(&h);
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let response = rotate(&h, "model-signing", &admin).await;
        assert_eq!(response.status().as_u16(), 200, "rotation {round}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut signatures = Vec::new();
    for client in clients {
        signatures.extend(client.await.expect("client"));
    }
    assert!(
        signatures.len() > 50,
        "load was applied: {}",
        signatures.len()
    );
    // Every signature verifies under the version it names (all six are still published).
    let jwks = h.jwks().await;
    assert_eq!(
        kids(&jwks).len(),
        6,
        "six model-signing versions (the log key is never in the JWKS)"
    );
    let mut seen_versions = std::collections::BTreeSet::new();
    for signed in &signatures {
        verify_signature(&jwks, signed);
        seen_versions.insert(signed["key_version"].as_u64().expect("version"));
    }
    assert!(
        seen_versions.len() >= 3,
        "signatures spanned rotations: {seen_versions:?}"
    );
    // By log order, each signature names the version active at its place in the log.
    let mut active = 1;
    for event in log_events(&h).await {
        match event["kind"].as_str() {
            Some("key_rotated") if event["key"] == "model-signing" => {
                active = event["key_version"].as_u64().expect("version");
            }
            Some("signature") if event["key"] == "model-signing" => {
                assert_eq!(
                    event["key_version"].as_u64(),
                    Some(active),
                    "a signature names a version that was not active at its place in the log"
                );
            }
            _ => {}
        }
    }
    assert_eq!(active, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_backend_key_is_made_completes_on_restart() {
    let h = Harness::start_with(|c| {
        with_rotation(c, "1h");
        c.env.push((
            "SIGNET_FAILPOINT".into(),
            "rotation.after_backend_key".into(),
        ));
    })
    .await;
    let session = h.session().await;
    let before = sign_one(&h, &session, "before the crash").await;
    // The daemon aborts between making the new key in the token and activating it.
    let outcome = h
        .http
        .post(h.daemon.url("/v1/keys/model-signing/rotate"))
        .bearer_auth(admin_token(&h))
        .send()
        .await;
    assert!(
        outcome.is_err(),
        "the daemon died mid-rotation: {outcome:?}"
    );
    // Restart without the failpoint (the env file travels with the config).
    let config_path = h.daemon.config_path.clone();
    let env_path = config_path.with_extension("env.json");
    let env: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&env_path).expect("env")).expect("JSON");
    let mut env = env;
    env.remove("SIGNET_FAILPOINT");
    std::fs::write(&env_path, Value::Object(env).to_string()).expect("env");
    let Harness {
        hsm,
        issuer,
        daemon,
        http,
    } = h;
    drop(daemon);
    let daemon = Daemon::start_with_config_file(&hsm, config_path)
        .await
        .unwrap_or_else(|e| panic!("restart: {e}"));
    let h = Harness {
        hsm,
        issuer,
        daemon,
        http,
    };
    assert!(
        h.daemon
            .logs()
            .contains("completing a rotation interrupted"),
        "{}",
        h.daemon.logs()
    );
    assert_eq!(
        versions(&h.get_json("/v1/keys").await, "model-signing"),
        [(1, "verify-only".to_string()), (2, "active".to_string())]
    );
    let events = log_events(&h).await;
    let rotated: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "key_rotated")
        .collect();
    assert_eq!(rotated.len(), 1, "exactly one rotation logged");
    assert!(
        rotated[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("completed at start-up")),
        "{}",
        rotated[0]
    );
    let session = h.session().await;
    let after = sign_one(&h, &session, "after the crash").await;
    assert_eq!(after["key_version"], 2);
    let jwks = h.jwks().await;
    verify_signature(&jwks, &before);
    verify_signature(&jwks, &after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_survives_a_restart_and_happens_once() {
    let h = Harness::in_process_with(|c| {
        with_rotation(c, "1h");
        c.key_lines("model-signing", "rotation_period = \"1d\"");
    })
    .await;
    h.clock().advance(Duration::from_secs(12 * 3600));
    // A restart does not reset the due date: it is in the store.
    let h = h.restart(|_| {}).await;
    assert_eq!(
        versions(&h.get_json("/v1/keys").await, "model-signing"),
        [(1, "active".to_string())],
        "not due yet"
    );
    h.clock().advance(Duration::from_secs(12 * 3600));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(25);
    loop {
        let listed = versions(&h.get_json("/v1/keys").await, "model-signing");
        if listed.len() == 2 {
            assert_eq!(listed[1], (2, "active".to_string()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled rotation: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Not before it was due: the store's dates are whole seconds, so compare them, not this
    // test's clock.
    let keys = h.get_json("/v1/keys").await;
    let model = keys
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "model-signing")
        .expect("model-signing");
    let at = |i: usize| {
        let text = model["versions"][i]["created_at"]
            .as_str()
            .expect("created_at");
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    };
    assert!(
        at(1) - at(0) >= time::Duration::days(1),
        "not before it was due: {model}"
    );
    let events = log_events(&h).await;
    let rotated: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "key_rotated")
        .collect();
    assert_eq!(rotated.len(), 1, "once for this due date");
    assert_eq!(rotated[0]["actor"], "scheduler");
}

/// Signs `name` (a fresh model) with `signet sign`; returns the model's path and its manifest
/// signature's log entry (index, time).
pub fn sign_model(h: &Harness, dir: &std::path::Path, name: &str) -> (String, u64, String) {
    let model = dir.join(name);
    crate::workflow::write_model(&model);
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, h.issuer.mint_default()).expect("token");
    let model_arg = model.display().to_string();
    let (code, _, stderr) = signet(
        &[
            "sign",
            &model_arg,
            "--server",
            &h.daemon.base_url,
            "--key",
            "model-signing",
            "--token-file",
            &token.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(model.join("signet-receipt.json")).expect("receipt"))
            .expect("JSON");
    let leaf: Value = serde_json::from_slice(
        &STANDARD
            .decode(receipt["leaf_input"].as_str().expect("leaf"))
            .expect("base64"),
    )
    .expect("leaf JSON");
    (
        model_arg,
        receipt["log_index"].as_u64().expect("index"),
        leaf["time"].as_str().expect("time").to_string(),
    )
}

/// `signet keys ARGS --server … --token-file` with an admin's token.
fn admin_keys(h: &Harness, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let token = dir.join("admin.token");
    std::fs::write(&token, admin_token(h)).expect("token");
    let token = token.display().to_string();
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", &h.daemon.base_url, "--token-file", &token]);
    signet(&all, &[])
}

/// `signet verify MODEL --trust FILE --server URL` with this test's own trust state (the
/// server proves a newer trust root consistent with the one remembered).
fn verify_with_trust(
    h: &Harness,
    dir: &std::path::Path,
    model: &str,
    trust: &std::path::Path,
) -> (i32, String, String) {
    let state = dir.join("trust-state.json").display().to_string();
    signet(
        &[
            "verify",
            model,
            "--trust",
            &trust.display().to_string(),
            "--trust-state",
            &state,
            "--server",
            &h.daemon.base_url,
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_version_signed_outlives_its_retirement_and_a_revocation_splits_at_the_compromise() {
    let h = Harness::start_with(|c| with_rotation(c, "30d")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (model_a, _, _) = sign_model(&h, dir.path(), "a");
    let trust_before = dir.path().join("trust-before.json");
    let vkey = crate::workflow::fetch_trust(&h, &trust_before);
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_a, &trust_before);
    assert_eq!(code, 0, "{stderr}");

    // Routine: rotate, then retire version 1 at once.
    let (code, _, stderr) = admin_keys(&h, dir.path(), &["rotate", "model-signing"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = admin_keys(
        &h,
        dir.path(),
        &[
            "retire",
            "model-signing",
            "--version",
            "1",
            "--reason",
            "routine",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("retired"), "{stdout}");
    assert_eq!(
        versions(&h.get_json("/v1/keys").await, "model-signing"),
        [(1, "retired".to_string()), (2, "active".to_string())]
    );
    // The JWKS keeps its meaning (keys that verify new signatures): version 1 is gone there...
    let jwks_url = h.daemon.url("/.well-known/jwks.json");
    let (code, _, stderr) = signet(
        &["verify", &model_a, "--jwks", &jwks_url, "--log-key", &vkey],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not in the JWKS"), "{stderr}");
    // ...but what it signed while active still verifies, under the root fetched before the
    // rotation and under one fetched after the retirement.
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_a, &trust_before);
    assert_eq!(code, 0, "{stderr}");
    let trust_after = dir.path().join("trust-after.json");
    crate::workflow::fetch_trust(&h, &trust_after);
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_a, &trust_after);
    assert_eq!(code, 0, "{stderr}");
    let root: Value =
        serde_json::from_slice(&std::fs::read(&trust_after).expect("read")).expect("JSON");
    let v1 = &root["keys"][0]["versions"][0];
    assert_eq!(v1["state"], "retired", "{root}");
    assert!(v1["deactivated"]["index"].is_u64(), "{root}");
    // Having seen the newer root, this machine now refuses the older one (no rollback).
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_a, &trust_before);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("older than the trust root accepted before"),
        "{stderr}"
    );

    // A compromise: version 2 signs B, then (a second later) C; it is revoked as compromised
    // from C's time. B still verifies, C does not, and the message names the revocation.
    let (model_b, _, time_b) = sign_model(&h, dir.path(), "b");
    let mut time_c;
    let mut model_c;
    loop {
        let signed = sign_model(&h, dir.path(), "c");
        model_c = signed.0;
        time_c = signed.2;
        if time_c > time_b {
            break;
        }
        std::fs::remove_dir_all(&model_c).expect("rm");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, stdout, stderr) = admin_keys(
        &h,
        dir.path(),
        &[
            "revoke",
            "model-signing",
            "--version",
            "2",
            "--compromised-since",
            &time_c,
            "--reason",
            "token leaked",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("revoke"), "{stdout}");
    // Revoking the active version rotated first.
    assert_eq!(
        versions(&h.get_json("/v1/keys").await, "model-signing"),
        [
            (1, "retired".to_string()),
            (2, "retired".to_string()),
            (3, "active".to_string())
        ]
    );
    let trust_revoked = dir.path().join("trust-revoked.json");
    crate::workflow::fetch_trust(&h, &trust_revoked);
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_b, &trust_revoked);
    assert_eq!(code, 0, "signed before the compromise: {stderr}");
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_c, &trust_revoked);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.lines().next().unwrap_or("").contains("was revoked"),
        "{stderr}"
    );
    let (code, _, stderr) = verify_with_trust(&h, dir.path(), &model_a, &trust_revoked);
    assert_eq!(code, 0, "version 1 is untouched: {stderr}");
    let events = log_events(&h).await;
    let revoked = events
        .iter()
        .find(|e| e["kind"] == "key_revoked")
        .expect("logged");
    assert_eq!(revoked["reason"], "token leaked");
    assert_eq!(revoked["compromised_since"], time_c.as_str());
    // A revocation is final, and a future compromise time is refused.
    let (code, _, stderr) = admin_keys(
        &h,
        dir.path(),
        &[
            "revoke",
            "model-signing",
            "--version",
            "2",
            "--compromised-since",
            &time_c,
            "--reason",
            "again",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already revoked"), "{stderr}");
    let (code, _, stderr) = admin_keys(
        &h,
        dir.path(),
        &[
            "revoke",
            "model-signing",
            "--version",
            "1",
            "--compromised-since",
            "2999-01-01T00:00:00Z",
            "--reason",
            "future",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("in the future"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_rotation_with_the_config_is_picked_up_by_the_daemon() {
    let h = Harness::start_with(|c| with_rotation(c, "1h")).await;
    let config = h.daemon.config_path.display().to_string();
    let conf = h.hsm.conf.display().to_string();
    let (code, stdout, stderr) = signet(
        &["keys", "rotate", "model-signing", "--config", &config],
        &[
            ("SOFTHSM2_CONF", &conf),
            ("SIGNET_TEST_HSM_PIN", crate::harness::softhsm::PIN),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("break-glass"), "{stdout}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = h.session().await;
    loop {
        let signed = sign_one(&h, &session, "after break-glass").await;
        if signed["key_version"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not pick up the rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = log_events(&h).await;
    let rotated = events
        .iter()
        .find(|e| e["kind"] == "key_rotated")
        .expect("logged");
    assert_eq!(rotated["actor"], "break-glass");
}

/// A rotation left pending (its request cut off, the store down while cleaning up) must not
/// block rotations until a restart: the scheduler rolls it back once it is clearly stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_left_pending_is_rolled_back_by_the_scheduler() {
    let h = Harness::start_with(|c| with_rotation(c, "1h")).await;
    let stale = time::OffsetDateTime::now_utc().unix_timestamp() - 3600;
    {
        // What a rotation cut off before its backend key was recorded leaves in the store.
        let db = rusqlite::Connection::open(h.hsm.dir.path().join("signet.db")).expect("db");
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        db.execute(
            "INSERT INTO key_versions (key, version, key_id, backend, backend_ref, algorithm, \
             public_key_spki, state, created_at) \
             SELECT key, 2, '', backend, '', algorithm, x'', 'pending', ?1 \
             FROM key_versions WHERE key = 'model-signing' AND version = 1",
            [stale],
        )
        .expect("pending row");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rolled_back = log_events(&h)
            .await
            .into_iter()
            .find(|e| e["kind"] == "key_rotation_rolled_back");
        if let Some(event) = rolled_back {
            assert!(
                event["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("by the scheduler")),
                "{event}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pending version was never cleaned up:\n{}",
            h.daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Rotations work again, without a restart, and take the freed version number.
    let response = rotate(&h, "model-signing", &admin_token(&h)).await;
    assert_eq!(response.status().as_u16(), 200, "{}", h.daemon.logs());
    assert_eq!(
        versions(&h.get_json("/v1/keys").await, "model-signing"),
        [(1, "verify-only".to_string()), (2, "active".to_string())]
    );
}

/// Each version a retirement or revocation cannot apply to is a 400 naming why; the log key is
/// never changed through the API (403); a compromise time in the future is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_or_revoking_a_version_that_cannot_take_it_is_refused_with_the_reason() {
    let h = Harness::start_with(|c| with_rotation(c, "30d")).await;
    let admin = admin_token(&h);
    let post = |path: String, body: Value| {
        let (http, url, admin) = (h.http.clone(), h.daemon.url(&path), admin.clone());
        async move {
            let response = http
                .post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("POST");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let refused = |outcome: (u16, Value), status: u16, detail: &str| {
        assert_eq!(outcome.0, status, "{}", outcome.1);
        assert!(
            outcome.1["detail"].as_str().unwrap_or("").contains(detail),
            "{detail}: {}",
            outcome.1
        );
    };
    let retire = "/v1/keys/model-signing/retire".to_string();
    let revoke = "/v1/keys/model-signing/revoke".to_string();
    refused(
        post(retire.clone(), json!({"version": 9})).await,
        400,
        "it has no version 9",
    );
    refused(
        post(
            revoke.clone(),
            json!({"version": 9, "compromised_since": "2026-01-01T00:00:00Z", "reason": "x"}),
        )
        .await,
        400,
        "it has no version 9",
    );
    // A version being created (what a rotation cut off leaves) can be neither.
    {
        let db = rusqlite::Connection::open(h.hsm.dir.path().join("signet.db")).expect("db");
        db.busy_timeout(Duration::from_secs(5)).expect("busy");
        db.execute(
            "INSERT INTO key_versions (key, version, key_id, backend, backend_ref, algorithm, \
             public_key_spki, state, created_at) \
             SELECT key, 2, '', backend, '', algorithm, x'', 'pending', created_at \
             FROM key_versions WHERE key = 'model-signing' AND version = 1",
            [],
        )
        .expect("pending row");
    }
    refused(
        post(retire.clone(), json!({"version": 2})).await,
        400,
        "version 2 is being created",
    );
    refused(
        post(
            revoke.clone(),
            json!({"version": 2, "compromised_since": "2026-01-01T00:00:00Z", "reason": "x"}),
        )
        .await,
        400,
        "version 2 is being created",
    );
    // A compromise time in the future, or not a time.
    refused(
        post(
            revoke.clone(),
            json!({"version": 1, "compromised_since": "2999-01-01T00:00:00Z", "reason": "x"}),
        )
        .await,
        400,
        "compromised_since is in the future",
    );
    refused(
        post(
            revoke.clone(),
            json!({"version": 1, "compromised_since": "yesterday", "reason": "x"}),
        )
        .await,
        400,
        "RFC 3339",
    );
    // The log key is not an admin's to change.
    refused(
        post(
            "/v1/keys/log-signing/revoke".into(),
            json!({"version": 1, "compromised_since": "2026-01-01T00:00:00Z", "reason": "x"}),
        )
        .await,
        403,
        "",
    );
    let response = rotate(&h, "log-signing", &admin).await;
    assert_eq!(problem(response).await, (403, "forbidden".to_string()));
}

/// Two processes rotating one key: a break-glass rotation cut off after making its backend key
/// leaves its version pending in the store; while it may still be under way, the daemon refuses
/// another rotation with 409 (and the CLI with exit 1) rather than make a second version. Once
/// it is older than any backend deadline, the scheduler rolls it back and rotation works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_way_in_another_process_is_409() {
    let h = Harness::in_process_with(|c| with_rotation(c, "1h")).await;
    let config = h.daemon.config_path.display().to_string();
    let conf = h.hsm.conf.display().to_string();
    let break_glass = |failpoint: Option<&str>| {
        let mut env = vec![("SOFTHSM2_CONF", conf.as_str())];
        if let Some(name) = failpoint {
            env.push(("SIGNET_FAILPOINT", name));
        }
        signet(
            &["keys", "rotate", "model-signing", "--config", &config],
            &env,
        )
    };
    let (code, _, stderr) = break_glass(Some("rotation.after_backend_key"));
    assert_ne!(code, 0, "the failpoint aborts the rotation: {stderr}");

    let response = rotate(&h, "model-signing", &admin_token(&h)).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("a rotation is already under way")),
        "{body}"
    );
    let (code, _, stderr) = break_glass(None);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("a rotation is already under way"),
        "{stderr}"
    );

    h.clock().advance(Duration::from_secs(601));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = rotate(&h, "model-signing", &admin_token(&h)).await;
        if response.status().as_u16() == 200 {
            break;
        }
        let body = response.text().await.unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "the left-over version blocks rotation: {body}"
        );
        // The scheduler retries a failed attempt after a pause on its clock.
        h.clock().advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = versions(&h.get_json("/v1/keys").await, "model-signing");
    assert_eq!(
        listed.iter().filter(|(_, state)| state == "active").count(),
        1,
        "{listed:?}"
    );
}
