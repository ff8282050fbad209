//! The trust model, attacked: a caller forges a checkpoint over fabricated entries with keys it
//! can use; trust roots that do not prove what they say, or are stale, or roll back; authority
//! re-checked at every signature; sessions ended by an administrator; a break-glass rotation
//! racing signatures; a log key sharing material with a signing key.
use signet::clock::Clock;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Daemon, DaemonConfig, Harness, problem, sha256_digest};
use crate::log::signet_log;
use crate::rotation::admin_token;
use crate::workflow::{fetch_trust, signet};

fn leaf_hash(leaf: &[u8]) -> Vec<u8> {
    Sha256::digest([&[0u8][..], leaf].concat()).to_vec()
}

fn node_hash(left: &[u8], right: &[u8]) -> Vec<u8> {
    Sha256::digest([&[1u8][..], left, right].concat()).to_vec()
}

/// Signs a model with `signet sign` as the tests' CI job (repository acme/models).
fn sign_model(h: &Harness, dir: &Path) -> String {
    crate::rotation::sign_model(h, dir, "model").0
}

fn verify_trust(model: &str, trust: &Path, state: &Path, extra: &[&str]) -> (i32, String, String) {
    let trust = trust.display().to_string();
    let state = state.display().to_string();
    let mut args = vec![
        "verify",
        model,
        "--trust",
        trust.as_str(),
        "--trust-state",
        state.as_str(),
    ];
    args.extend_from_slice(extra);
    signet(&args, &[])
}

fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

/// The forgery that worked before the log key was pinned: a caller allowed to sign as
/// acme/models rewrites its receipt's entries to say acme/victim, builds a tree over them and
/// signs a checkpoint with keys it can use: the signing key through `POST /v1/sign`, or an
/// Ed25519 key of its own under the log's name. Every verifier refuses, naming the checkpoint
/// signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_forged_by_a_signer_over_fabricated_entries_is_refused() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sign_model(&h, dir.path());
    let trust = dir.path().join("trust.json");
    let vkey = fetch_trust(&h, &trust);
    let state = dir.path().join("state.json");
    let (code, _, stderr) = verify_trust(
        &model,
        &trust,
        &state,
        &["--identity", "repository=acme/models"],
    );
    assert_eq!(code, 0, "the honest model verifies: {stderr}");

    // The attacker's fabricated entries and tree.
    let receipt_path = Path::new(&model).join("signet-receipt.json");
    let mut receipt: Value =
        serde_json::from_slice(&std::fs::read(&receipt_path).expect("read")).expect("JSON");
    let forge_leaf = |encoded: &str| -> Vec<u8> {
        let leaf = STANDARD.decode(encoded).expect("base64");
        String::from_utf8(leaf)
            .expect("UTF-8")
            .replace("acme/models", "acme/victim")
            .into_bytes()
    };
    let leaf_0 = forge_leaf(receipt["leaf_input"].as_str().expect("leaf"));
    let leaf_1 = forge_leaf(receipt["model_sig"]["leaf_input"].as_str().expect("leaf"));
    let (hash_0, hash_1) = (leaf_hash(&leaf_0), leaf_hash(&leaf_1));
    let root = node_hash(&hash_0, &hash_1);
    let body = format!(
        "signet.test/log\n2\n{}\ntime {}\n",
        STANDARD.encode(&root),
        time::OffsetDateTime::now_utc().unix_timestamp()
    );

    // Forgery 1: the checkpoint signed through /v1/sign with the caller's own signing key.
    let session = h.session().await;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes())));
    let response = h
        .sign(&session, json!({"key": "model-signing", "digest": digest}))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let signed: Value = response.json().await.expect("JSON");
    let der = STANDARD
        .decode(signed["signatures"][0]["signature"].as_str().expect("sig"))
        .expect("base64");
    let mut blob = Sha256::digest(b"any key id").to_vec()[..4].to_vec();
    blob.extend_from_slice(&der);
    let with_signing_key = format!(
        "{body}\n\u{2014} signet.test/log {}\n",
        STANDARD.encode(&blob)
    );
    // Forgery 2: an Ed25519 key of the attacker's own, named like the log.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let forger_vkey =
        signet::note::VerifierKey::new("signet.test/log", &forger.verifying_key().to_bytes())
            .expect("vkey");
    let with_own_key = format!(
        "{body}\n{}",
        forger_vkey.signature_line(&forger.sign(body.as_bytes()).to_bytes())
    );
    // And the signing key may never sign as the log key.
    let response = h
        .sign(
            &session,
            json!({"key": "log-signing", "digest": sha256_digest(body.as_bytes())}),
        )
        .await;
    let (status, code) = problem(response).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));

    for forged in [&with_signing_key, &with_own_key] {
        receipt["log_index"] = json!(0);
        receipt["leaf_input"] = json!(STANDARD.encode(&leaf_0));
        receipt["inclusion_proof"] = json!([STANDARD.encode(&hash_1)]);
        receipt["model_sig"]["log_index"] = json!(1);
        receipt["model_sig"]["leaf_input"] = json!(STANDARD.encode(&leaf_1));
        receipt["model_sig"]["inclusion_proof"] = json!([STANDARD.encode(&hash_0)]);
        receipt["checkpoint"] = json!(forged);
        std::fs::write(&receipt_path, receipt.to_string()).expect("write");
        let (code, stdout, stderr) = verify_trust(
            &model,
            &trust,
            &state,
            &["--identity", "repository=acme/victim"],
        );
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(
            first_line(&stderr).contains("checkpoint signature"),
            "{stderr}"
        );
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, h.jwks().await.to_string()).expect("jwks");
        let (code, _, stderr) = signet(
            &[
                "verify",
                &model,
                "--jwks",
                &jwks.display().to_string(),
                "--log-key",
                &vkey,
                "--identity",
                "repository=acme/victim",
            ],
            &[],
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(
            first_line(&stderr).contains("checkpoint signature"),
            "{stderr}"
        );
    }

    // `signet log verify` against a server that serves the forged checkpoint (and names the
    // forger's key as its own): refused under the pinned key.
    let forged_note = with_own_key.clone();
    let forged_vkey = forger_vkey.to_vkey();
    let app = axum::Router::new()
        .route(
            "/v1/log/checkpoint",
            axum::routing::get(move || {
                let note = forged_note.clone();
                async move { note }
            }),
        )
        .route(
            "/v1/log/vkey",
            axum::routing::get(move || {
                let vkey = forged_vkey.clone();
                async move { vkey }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (fake, vkey) = (fake.clone(), vkey.clone());
        move || signet_log(&["verify", "--server", &fake, "--log-key", &vkey])
    })
    .await
    .expect("log verify");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("checkpoint signature"), "{stderr}");
    assert!(stderr.contains("not signed by"), "{stderr}");
    server.abort();
}

/// A trust root must prove each version's life in the log under the pinned key, be fresh, and
/// be consistent with what this machine accepted before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_roots_that_do_not_prove_what_they_claim_are_refused() {
    let h = Harness::start_with(|c| {
        c.add_admin_policy("acme/security", &["model-signing"]);
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sign_model(&h, dir.path());
    // A second version, so that the first has a deactivation entry.
    let response = crate::rotation::rotate(&h, "model-signing", &admin_token(&h)).await;
    assert_eq!(response.status().as_u16(), 200);
    let trust = dir.path().join("trust.json");
    let vkey = fetch_trust(&h, &trust);
    let honest: Value =
        serde_json::from_slice(&std::fs::read(&trust).expect("read")).expect("JSON");
    assert_eq!(honest["format"], "signet-trust/v1");
    assert_eq!(honest["log_key"], vkey.as_str());
    assert_eq!(
        honest["keys"][0]["versions"].as_array().expect("v").len(),
        2
    );
    let state = dir.path().join("state.json");
    let (code, _, stderr) = verify_trust(&model, &trust, &state, &[]);
    assert_eq!(code, 0, "{stderr}");

    let edited = dir.path().join("edited.json");
    let refused = |edit: &dyn Fn(&mut Value), extra: &[&str], reason: &str| {
        let mut root = honest.clone();
        edit(&mut root);
        std::fs::write(&edited, root.to_string()).expect("write");
        let fresh_state = dir
            .path()
            .join(format!("state-{}.json", rand::random::<u32>()));
        let (code, stdout, stderr) = verify_trust(&model, &edited, &fresh_state, extra);
        assert_eq!(code, 1, "{reason}: {stdout}{stderr}");
        assert!(first_line(&stderr).contains(reason), "{reason}: {stderr}");
    };
    // An entry that is not in the checkpoint.
    refused(
        &|root| {
            let leaf = root["keys"][0]["versions"][0]["created"]["leaf_input"]
                .as_str()
                .expect("leaf")
                .to_string();
            let mut bytes = STANDARD.decode(leaf).expect("base64");
            bytes[10] ^= 1;
            root["keys"][0]["versions"][0]["created"]["leaf_input"] = json!(STANDARD.encode(bytes));
        },
        &[],
        "is not included in the checkpoint",
    );
    // Another public key for version 1 (the attacker's, with its own valid kid).
    refused(
        &|root| {
            let key = p256::SecretKey::random(&mut rand::thread_rng());
            let spki =
                p256::pkcs8::EncodePublicKey::to_public_key_der(&key.public_key()).expect("spki");
            let jwk =
                signet::jwks::jwk_from_spki(spki.as_bytes(), signet::algorithm::Algorithm::ES256)
                    .expect("jwk");
            root["keys"][0]["versions"][0]["kid"] = json!(jwk.kid);
            root["keys"][0]["versions"][0]["jwk"] = serde_json::to_value(&jwk).expect("jwk");
        },
        &[],
        "does not introduce this key version with this public key",
    );
    // Version 1's deactivation left out, to make a rotated-out key look active.
    refused(
        &|root| root["keys"][0]["versions"][0]["deactivated"] = Value::Null,
        &[],
        "missing, although v2 follows it",
    );
    // Another origin, or another log key than the one pinned.
    refused(
        &|root| root["origin"] = json!("other.test/log"),
        &[],
        "not the pinned log key",
    );
    let forger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let forger_vkey =
        signet::note::VerifierKey::new("signet.test/log", &forger.verifying_key().to_bytes())
            .expect("vkey")
            .to_vkey();
    refused(
        &|root| root["log_key"] = json!(forger_vkey),
        &["--log-key", &vkey],
        "not the pinned log key",
    );
    // The file names the forger's key (the file is then the pin): its checkpoint is not
    // signed by that key.
    refused(
        &|root| root["log_key"] = json!(forger_vkey),
        &[],
        "checkpoint signature",
    );
    // Inconsistent with the root accepted before: this machine remembers another tree of the
    // same size (a fork shown to it earlier).
    let mut remembered: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
    remembered["root"] = json!(STANDARD.encode([0u8; 32]));
    std::fs::write(&state, remembered.to_string()).expect("write");
    let (code, _, stderr) = verify_trust(&model, &trust, &state, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(first_line(&stderr).contains("the log forked"), "{stderr}");
}

/// Authority is re-checked against the running config at every signature: a policy edit and a
/// restart take a key from a live session, and a session whose policy is gone stops.
/// A trust root whose checkpoint is older than `--max-trust-age` is refused, naming its age:
/// an operator cannot keep verifiers on an old view of the log (the daemon's clock is set two
/// hours back, so its checkpoints are two hours old to `signet verify`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_root_older_than_the_maximum_age_is_refused() {
    let two_hours_ago = signet::clock::SystemClock.now_unix_millis() - 2 * 3600 * 1000;
    let h = Harness::in_process_on(signet::clock::ManualClock::at(two_hours_ago), |_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sign_model(&h, dir.path());
    let trust = dir.path().join("trust.json");
    fetch_trust(&h, &trust);
    let (code, _, stderr) = verify_trust(
        &model,
        &trust,
        &dir.path().join("state-1h.json"),
        &["--max-trust-age", "1h"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        first_line(&stderr).contains("was signed 2h") && first_line(&stderr).contains("ago"),
        "{stderr}"
    );
    let (code, _, stderr) = verify_trust(
        &model,
        &trust,
        &dir.path().join("state-3h.json"),
        &["--max-trust-age", "3h"],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_edit_and_restart_takes_keys_from_live_sessions() {
    let h = Harness::start_with(|c| c.add_key("other-key", "ES256")).await;
    let session = h
        .session_with(Some(json!({"keys": ["model-signing", "other-key"]})))
        .await;
    for key in ["model-signing", "other-key"] {
        let response = h
            .sign(
                &session,
                json!({"key": key, "digest": sha256_digest(b"before")}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 200, "{key}");
    }
    let config = h.daemon.config_path.clone();
    let h = h
        .restart(|_| {
            let text = std::fs::read_to_string(&config).expect("config");
            let text = text.replace(
                "keys = [\"model-signing\",\"other-key\"]",
                "keys = [\"other-key\"]",
            );
            assert!(text.contains("keys = [\"other-key\"]"), "{text}");
            std::fs::write(&config, text).expect("write");
        })
        .await;
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digest": sha256_digest(b"after")}),
        )
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("policy release no longer grants key model-signing"),
        "{body}"
    );
    let response = h
        .sign(
            &session,
            json!({"key": "other-key", "digest": sha256_digest(b"after")}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);

    // The policy renamed away: the session's policy no longer exists.
    let config = h.daemon.config_path.clone();
    let h = h
        .restart(|_| {
            let text = std::fs::read_to_string(&config).expect("config");
            std::fs::write(
                &config,
                text.replace("name = \"release\"", "name = \"release-2\""),
            )
            .expect("write");
        })
        .await;
    let response = h
        .sign(
            &session,
            json!({"key": "other-key", "digest": sha256_digest(b"gone")}),
        )
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("policy release no longer exists"),
        "{body}"
    );
}

/// An administrator ends live sessions by subject (with the CLI), by policy, or all; each stops
/// on its next request, and the revocation is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_revoked_by_an_admin_stop_on_their_next_request() {
    let h = Harness::start_with(|c| c.add_admin_policy("acme/security", &["model-signing"])).await;
    let first = h.session().await;
    let second = h.session().await;
    let signs = |session: String| {
        let h = &h;
        async move {
            h.sign(
                &session,
                json!({"key": "model-signing", "digest": sha256_digest(b"x")}),
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(signs(first.clone()).await, 200);
    let revoke = |token: String, body: Value| {
        let h = &h;
        async move {
            h.http
                .post(h.daemon.url("/v1/sessions/revoke"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("POST")
        }
    };
    // Not an admin: refused. Two scopes at once: a bad request.
    let response = revoke(h.issuer.mint_default(), json!({"all": true})).await;
    assert_eq!(problem(response).await, (403, "forbidden".to_string()));
    let response = revoke(admin_token(&h), json!({"all": true, "policy": "release"})).await;
    assert_eq!(
        problem(response).await,
        (400, "invalid_request".to_string())
    );
    // A session token is not an admin's identity.
    let response = revoke(first.clone(), json!({"all": true})).await;
    assert_eq!(problem(response).await.0, 401);

    // By subject, through the CLI.
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin");
    std::fs::write(&token, admin_token(&h)).expect("token");
    let subject = "repo:acme/models:ref:refs/heads/main";
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (server, token) = (h.daemon.base_url.clone(), token.display().to_string());
        move || {
            signet(
                &[
                    "sessions",
                    "revoke",
                    "--server",
                    &server,
                    "--subject",
                    subject,
                    "--reason",
                    "runner compromised",
                    "--token-file",
                    &token,
                ],
                &[],
            )
        }
    })
    .await
    .expect("cli");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("revoked 2 live sessions"), "{stdout}");
    assert_eq!(signs(first).await, 401);
    assert_eq!(signs(second).await, 401);
    // By policy, and all.
    let third = h.session().await;
    let response = revoke(admin_token(&h), json!({"policy": "release"})).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(signs(third).await, 401);
    let fourth = h.session().await;
    let response = revoke(admin_token(&h), json!({"all": true, "reason": "drill"})).await;
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["revoked"], 1);
    assert_eq!(signs(fourth).await, 401);
    // New sessions still open (a policy edit is what bars a subject for good).
    let fifth = h.session().await;
    assert_eq!(signs(fifth).await, 200);

    let entries = crate::rotation::log_events(&h).await;
    let revoked: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "sessions_revoked")
        .collect();
    assert_eq!(revoked.len(), 3, "{revoked:?}");
    assert_eq!(revoked[0]["scope"], format!("subject={subject}"));
    assert_eq!(revoked[0]["sessions"], 2);
    assert_eq!(revoked[0]["reason"], "runner compromised");
    assert_eq!(
        revoked[0]["policy"], "key-admins-acme-security",
        "the admin who did it"
    );
}

/// A break-glass rotation from another process while signatures are being made: every request
/// still succeeds, and no signature is logged under a version after that version's
/// deactivation entry (the append checks the version is active at its place in the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_rotation_during_signing_never_logs_a_signature_after_deactivation() {
    let h = Harness::start_with(|c| c.max_signatures = 100_000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let session = h.session().await;
        let (http, url, stop) = (h.http.clone(), h.daemon.url("/v1/sign"), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 5_000 {
                n += 1;
                let response = http
                    .post(&url)
                    .bearer_auth(&session)
                    .json(
                        &json!({"key": "model-signing", "digest": sha256_digest(&n.to_le_bytes())}),
                    )
                    .send()
                    .await
                    .expect("POST");
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    let config = h.daemon.config_path.display().to_string();
    let conf = h.hsm.conf.display().to_string();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (code, _, stderr) = tokio::task::spawn_blocking({
            let (config, conf) = (config.clone(), conf.clone());
            move || {
                signet(
                    &["keys", "rotate", "model-signing", "--config", &config],
                    &[
                        ("SOFTHSM2_CONF", &conf),
                        ("SIGNET_TEST_HSM_PIN", crate::harness::softhsm::PIN),
                    ],
                )
            }
        })
        .await
        .expect("cli");
        assert_eq!(code, 0, "{stderr}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.expect("client"));
    }
    assert!(statuses.len() > 20, "load was applied");
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", h.daemon.logs());

    let events = crate::rotation::log_events(&h).await;
    let mut deactivated = std::collections::HashMap::new();
    for (index, event) in events.iter().enumerate() {
        if event["kind"] == "key_rotated" && event["key"] == "model-signing" {
            deactivated.insert(event["previous_version"].as_u64().expect("prev"), index);
        }
    }
    assert_eq!(deactivated.len(), 2, "two break-glass rotations logged");
    let mut by_version = std::collections::HashMap::new();
    for (index, event) in events.iter().enumerate() {
        if event["kind"] != "signature" {
            continue;
        }
        let version = event["key_version"].as_u64().expect("version");
        *by_version.entry(version).or_insert(0) += 1;
        if let Some(end) = deactivated.get(&version) {
            assert!(
                index < *end,
                "entry {index} signed by v{version} after its deactivation at {end}"
            );
        }
    }
    assert!(
        by_version.len() >= 2,
        "signatures under several versions: {by_version:?}"
    );
    eprintln!(
        "break-glass race: {} requests, {} signed again after the append refused a deactivated version",
        statuses.len(),
        h.daemon.logs().matches("signing again").count()
    );
}

/// No other key may share the log key's backend key: such a config does not start.
#[tokio::test]
async fn a_signing_key_on_the_log_keys_backend_key_does_not_start() {
    let hsm = crate::harness::softhsm::SoftHsm::new();
    let mut config = DaemonConfig::new(&hsm, "http://127.0.0.1:9");
    for key in config.keys.iter_mut().filter(|k| k.name == "model-signing") {
        key.backend_key = Some("log-signing".into());
    }
    let path = hsm.dir.path().join("shared.toml");
    std::fs::write(&path, config.render()).expect("write");
    let outcome = Daemon::start_with_config_file(&hsm, path).await;
    let stderr = match outcome {
        Ok(_) => panic!("a config sharing the log key's backend key started"),
        Err(stderr) => stderr,
    };
    assert!(
        stderr.contains("would share backend key \"log-signing\" with the log key"),
        "{stderr}"
    );
}

/// A store and receipts made before checkpoints were Ed25519 notes: on start the daemon signs
/// the existing tree again under the log key, and `signet receipt refresh` re-proves an old
/// receipt (refusing one whose entries were changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_store_is_signed_again_and_old_receipts_are_reproven() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sign_model(&h, dir.path());
    let trust = dir.path().join("trust.json");
    let vkey = fetch_trust(&h, &trust);
    let log_key = signet::note::VerifierKey::parse(&vkey).expect("vkey");
    // What an older signet left: checkpoints signed by another key (ES256 then), no anchor.
    let old_note = |note: &str| -> String {
        let (body, _) = note.split_once("\n\n").expect("note");
        let body = body
            .lines()
            .filter(|l| !l.starts_with("time "))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "{body}\n\n\u{2014} signet.test/log {}\n",
            STANDARD.encode([7u8; 76])
        )
    };
    let receipt_path = Path::new(&model).join("signet-receipt.json");
    let mut receipt: Value =
        serde_json::from_slice(&std::fs::read(&receipt_path).expect("read")).expect("JSON");
    receipt["checkpoint"] = json!(old_note(receipt["checkpoint"].as_str().expect("note")));
    std::fs::write(&receipt_path, receipt.to_string()).expect("write");
    let size = crate::rotation::log_events(&h).await.len() as u64;
    let h = h
        .restart(|folder| {
            std::fs::remove_file(folder.join("signet.db.anchor")).expect("anchor beside the store");
            let db = rusqlite::Connection::open(folder.join("signet.db")).expect("db");
            let notes: Vec<(i64, String)> = db
                .prepare("SELECT size, note FROM log_checkpoints")
                .expect("select")
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("rows")
                .map(|row| row.expect("row"))
                .collect();
            for (size, note) in notes {
                db.execute(
                    "UPDATE log_checkpoints SET note = ?1 WHERE size = ?2",
                    rusqlite::params![old_note(&note), size],
                )
                .expect("update");
            }
        })
        .await;
    let served = h
        .http
        .get(h.daemon.url("/v1/log/checkpoint"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let checkpoint =
        signet::checkpoint::verify_checkpoint(&served, &log_key).expect("signed again");
    assert_eq!(
        checkpoint.size, size,
        "the same tree, signed by the log key"
    );

    let state = dir.path().join("state.json");
    let (code, _, stderr) = verify_trust(&model, &trust, &state, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        first_line(&stderr).contains("checkpoint signature"),
        "{stderr}"
    );
    let refresh = |extra: &[&str]| {
        let mut args = vec![
            "receipt",
            "refresh",
            model.as_str(),
            "--server",
            &h.daemon.base_url,
            "--log-key",
            &vkey,
        ];
        args.extend_from_slice(extra);
        signet(&args, &[])
    };
    let (code, _, stderr) = refresh(&[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = verify_trust(&model, &trust, &state, &[]);
    assert_eq!(code, 0, "{stderr}");
    // A receipt whose entry was changed is not re-proven.
    let mut receipt: Value =
        serde_json::from_slice(&std::fs::read(&receipt_path).expect("read")).expect("JSON");
    let mut leaf = STANDARD
        .decode(receipt["leaf_input"].as_str().expect("leaf"))
        .expect("base64");
    leaf[20] ^= 1;
    receipt["leaf_input"] = json!(STANDARD.encode(&leaf));
    std::fs::write(&receipt_path, receipt.to_string()).expect("write");
    let (code, _, stderr) = refresh(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("differs from the receipt's"), "{stderr}");
}
