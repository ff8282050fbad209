//! The model-signing workflow end to end: `signet sign` in "CI" against the daemon on SoftHSM and
//! the tests' issuer, `signet verify` at "deployment", each tampering caught and named, the
//! signatures checked by OpenSSL and RustCrypto, and the CI token sources.
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{DaemonConfig, Harness, python};
use crate::verify::{check, find_jwk, openssl_verify};

/// Runs the `signet` binary with no CI token variables inherited; returns (code, stdout, stderr).
/// It blocks its thread: tests using it run on a multi-threaded runtime, so the in-process issuer
/// keeps answering.
pub fn signet(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signet"));
    command.args(args);
    for name in [
        "SIGNET_ID_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run signet");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A small model: nested directories, a space and a non-ASCII name, an empty file.
pub fn write_model(dir: &Path) {
    let files: [(&str, Vec<u8>); 4] = [
        (
            "weights/layer 1.bin",
            (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        ),
        ("tokenizer/vocab-é.json", br#"{"a":1}"#.to_vec()),
        ("empty.bin", Vec::new()),
        ("config.json", br#"{"layers":2}"#.to_vec()),
    ];
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, content).expect("write model file");
    }
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A signed model in a temporary directory, and the harness that signed it.
struct Signed {
    h: Harness,
    dir: tempfile::TempDir,
    model: PathBuf,
}

/// Writes the daemon's trust root to `path` with `signet trust`; returns the log's vkey.
pub fn fetch_trust(h: &Harness, path: &Path) -> String {
    let (code, _, stderr) = signet(
        &[
            "trust",
            "--server",
            &h.daemon.base_url,
            "-o",
            &path.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "signet trust: {stderr}");
    let root: Value =
        serde_json::from_slice(&std::fs::read(path).expect("trust root")).expect("JSON");
    root["log_key"].as_str().expect("log_key").to_string()
}

impl Signed {
    async fn new() -> Signed {
        let signed = Signed::unsigned(|c| c.add_key("other-key", "ES256")).await;
        let (code, _, stderr) = signed.sign(&signed.model, "model-signing", None);
        assert_eq!(code, 0, "sign failed: {stderr}");
        signed
    }

    /// The daemon (adjusted by `tweak`) and a model, not signed yet.
    async fn unsigned(tweak: impl FnOnce(&mut DaemonConfig)) -> Signed {
        let h = Harness::start_with(tweak).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model");
        write_model(&model);
        Signed { h, dir, model }
    }

    fn token_file(&self) -> PathBuf {
        let path = self.dir.path().join("id-token");
        std::fs::write(&path, self.h.issuer.mint_default()).expect("token file");
        path
    }

    fn sign(&self, model: &Path, key: &str, out_dir: Option<&Path>) -> (i32, String, String) {
        let args = self.sign_args(model, key, out_dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        signet(&args, &[])
    }

    fn sign_args(&self, model: &Path, key: &str, out_dir: Option<&Path>) -> Vec<String> {
        let token = self.token_file();
        let mut args = vec![
            "sign".to_string(),
            model.display().to_string(),
            "--server".into(),
            self.h.daemon.base_url.clone(),
            "--key".into(),
            key.into(),
            "--token-file".into(),
            token.display().to_string(),
        ];
        if let Some(out) = out_dir {
            args.extend(["--out-dir".into(), out.display().to_string()]);
        }
        args
    }

    /// `signet verify` with the trust root fetched on first use (and a state file of this
    /// test's own).
    fn verify(&self, model: &Path, extra: &[&str]) -> (i32, String, String) {
        let trust = self.dir.path().join("trust.json");
        if !trust.exists() {
            fetch_trust(&self.h, &trust);
        }
        let model = model.display().to_string();
        let trust = trust.display().to_string();
        let state = self
            .dir
            .path()
            .join("trust-state.json")
            .display()
            .to_string();
        let mut args = vec![
            "verify",
            model.as_str(),
            "--trust",
            trust.as_str(),
            "--trust-state",
            state.as_str(),
        ];
        args.extend_from_slice(extra);
        signet(&args, &[])
    }

    /// A copy of the signed model (signature files included) to tamper with.
    fn copy(&self, name: &str) -> PathBuf {
        let copy = self.dir.path().join(name);
        copy_tree(&self.model, &copy);
        copy
    }
}

/// Asserts a verification failed with exit 1 and the first stderr line says `reason`.
fn assert_fails(outcome: (i32, String, String), reason: &str) {
    let (code, stdout, stderr) = outcome;
    assert_eq!(code, 1, "expected exit 1; stdout {stdout}; stderr {stderr}");
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.contains(reason),
        "first line of stderr should say {reason:?}: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_model_verifies_online_and_offline_and_by_independent_tools() {
    let s = Signed::new().await;
    for file in [
        "manifest.json",
        "manifest.json.sig",
        "model.sig",
        "signet-receipt.json",
    ] {
        assert!(
            s.model.join(file).is_file(),
            "{file} written beside the model"
        );
    }
    let (code, stdout, stderr) = s.verify(
        &s.model,
        &[
            "--identity",
            "repository=acme/models",
            "--identity",
            "sub=repo:acme/models:ref:refs/heads/main",
            "--server",
            &s.h.daemon.base_url,
        ],
    );
    assert_eq!(code, 0, "verify: {stderr}");
    assert!(stdout.starts_with("verified: 4 files"), "{stdout}");

    // Offline: the JWKS saved to a file, no server.
    let jwks = s.h.get_json("/.well-known/jwks.json").await;
    let jwks_file = s.dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).expect("jwks file");
    let model = s.model.display().to_string();
    let jwks_path = jwks_file.display().to_string();
    let vkey = fetch_trust(&s.h, &s.dir.path().join("trust-offline.json"));
    let (code, _, stderr) = signet(
        &["verify", &model, "--jwks", &jwks_path, "--log-key", &vkey],
        &[],
    );
    assert_eq!(code, 0, "offline verify: {stderr}");
    // A JWKS alone pins no log key: a usage error naming both options.
    let (code, _, stderr) = signet(&["verify", &model, "--jwks", &jwks_path], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--jwks") && stderr.contains("--log-key"),
        "{stderr}"
    );

    // OpenSSL checks the raw detached signature over the manifest's bytes.
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(s.model.join("signet-receipt.json")).expect("read"))
            .expect("receipt JSON");
    let jwk = find_jwk(&jwks, receipt["key_id"].as_str().expect("key_id"));
    let signature = std::fs::read(s.model.join("manifest.json.sig")).expect("sig");
    assert!(
        openssl_verify(jwk, &s.model.join("manifest.json"), &signature),
        "openssl dgst -verify accepts manifest.json.sig"
    );

    // The DSSE envelope's signature over its PAE, checked with RustCrypto from the JWK JSON.
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(s.model.join("model.sig")).expect("read"))
            .expect("bundle JSON");
    let envelope = &bundle["dsseEnvelope"];
    let payload = STANDARD
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    let payload_type = envelope["payloadType"].as_str().expect("payloadType");
    let pae = [
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            payload.len()
        )
        .as_bytes(),
        &payload,
    ]
    .concat();
    let sig = STANDARD
        .decode(envelope["signatures"][0]["sig"].as_str().expect("sig"))
        .expect("base64");
    assert!(
        check(jwk, &Sha256::digest(&pae), &sig),
        "DSSE signature verifies"
    );
    let statement: Value = serde_json::from_slice(&payload).expect("statement");
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    let names: Vec<&str> = statement["predicate"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "config.json",
            "empty.bin",
            "tokenizer/vocab-é.json",
            "weights/layer 1.bin"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_fails_and_names_what_broke() {
    let s = Signed::new().await;

    let flipped = s.copy("flipped");
    let weights = flipped.join("weights/layer 1.bin");
    let mut bytes = std::fs::read(&weights).expect("read");
    bytes[1234] ^= 0x01;
    std::fs::write(&weights, bytes).expect("write");
    assert_fails(
        s.verify(&flipped, &[]),
        "weights/layer 1.bin does not match",
    );

    let added = s.copy("added");
    std::fs::write(added.join("weights/backdoor.bin"), b"x").expect("write");
    assert_fails(
        s.verify(&added, &[]),
        "weights/backdoor.bin is not in the manifest",
    );

    let removed = s.copy("removed");
    std::fs::remove_file(removed.join("config.json")).expect("rm");
    assert_fails(
        s.verify(&removed, &[]),
        "config.json is in the manifest but missing",
    );

    let renamed = s.copy("renamed");
    std::fs::rename(renamed.join("config.json"), renamed.join("config2.json")).expect("mv");
    let outcome = s.verify(&renamed, &[]);
    assert!(
        outcome.2.contains("config2.json is not in the manifest"),
        "{}",
        outcome.2
    );
    assert_fails(outcome, "config.json is in the manifest but missing");

    let edited = s.copy("edited");
    let manifest = std::fs::read_to_string(edited.join("manifest.json")).expect("read");
    assert!(manifest.contains(r#""size":0"#), "{manifest}");
    std::fs::write(
        edited.join("manifest.json"),
        manifest.replace(r#""size":0"#, r#""size":1"#),
    )
    .expect("write");
    assert_fails(
        s.verify(&edited, &[]),
        "manifest.json.sig: the signature does not verify",
    );

    // The same model signed by another key: its signature does not verify under the receipt's key.
    let other_sigs = s.dir.path().join("other-sigs");
    std::fs::create_dir_all(&other_sigs).expect("mkdir");
    let (code, _, stderr) = s.sign(&s.model, "other-key", Some(&other_sigs));
    assert_eq!(code, 0, "{stderr}");
    let foreign = s.copy("foreign-signature");
    std::fs::copy(
        other_sigs.join("manifest.json.sig"),
        foreign.join("manifest.json.sig"),
    )
    .expect("cp");
    assert_fails(
        s.verify(&foreign, &[]),
        "manifest.json.sig: the signature does not verify",
    );

    // A receipt for another entry: another model's signing.
    let other_model = s.dir.path().join("other-model");
    write_model(&other_model);
    std::fs::write(other_model.join("extra.bin"), b"other").expect("write");
    let (code, _, stderr) = s.sign(&other_model, "model-signing", None);
    assert_eq!(code, 0, "{stderr}");
    let wrong_receipt = s.copy("wrong-receipt");
    std::fs::copy(
        other_model.join("signet-receipt.json"),
        wrong_receipt.join("signet-receipt.json"),
    )
    .expect("cp");
    assert_fails(
        s.verify(&wrong_receipt, &[]),
        "does not record manifest.json.sig: it records another digest",
    );

    // A checkpoint whose signature was tampered with.
    let bad_checkpoint = s.copy("bad-checkpoint");
    let path = bad_checkpoint.join("signet-receipt.json");
    let mut receipt: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let note = receipt["checkpoint"].as_str().expect("note").to_string();
    let (body, signature_line) = note.trim_end().rsplit_once('\n').expect("signature line");
    let (prefix, blob) = signature_line.rsplit_once(' ').expect("blob");
    let mut raw = STANDARD.decode(blob).expect("base64");
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    receipt["checkpoint"] = json!(format!("{body}\n{prefix} {}\n", STANDARD.encode(raw)));
    std::fs::write(&path, receipt.to_string()).expect("write");
    assert_fails(s.verify(&bad_checkpoint, &[]), "the receipt's checkpoint");

    // A signer from another repository than the one demanded.
    assert_fails(
        s.verify(&s.model, &["--identity", "repository=acme/other"]),
        "the signer's repository is acme/models, not acme/other",
    );

    // A JWKS without the key (as after an emergency retirement).
    let empty_jwks = s.dir.path().join("empty-jwks.json");
    std::fs::write(&empty_jwks, r#"{"keys":[]}"#).expect("write");
    let model = s.model.display().to_string();
    let jwks = empty_jwks.display().to_string();
    let vkey = fetch_trust(&s.h, &s.dir.path().join("trust-jwks.json"));
    assert_fails(
        signet(
            &["verify", &model, "--jwks", &jwks, "--log-key", &vkey],
            &[],
        ),
        "is not in the JWKS",
    );

    // And the untouched model still verifies.
    let (code, _, stderr) = s.verify(&s.model, &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_and_unknown_key_are_clear_errors() {
    let s = Signed::new().await;
    let model = s.model.display().to_string();
    let server = s.h.daemon.base_url.clone();
    let (code, _, stderr) = signet(
        &[
            "sign",
            &model,
            "--server",
            &server,
            "--key",
            "model-signing",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no OIDC ID token"), "{stderr}");

    let token = s.token_file().display().to_string();
    let (code, _, stderr) = signet(
        &[
            "sign",
            &model,
            "--server",
            &server,
            "--key",
            "nope",
            "--token-file",
            &token,
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no key named \"nope\""), "{stderr}");

    // A token the policy does not admit is refused before any hashing, and never echoed.
    let stranger = s.h.issuer.mint_edited(|c| {
        c.insert("repository".into(), json!("evil/models"));
    });
    let (code, _, stderr) = signet(
        &[
            "sign",
            &model,
            "--server",
            &server,
            "--key",
            "model-signing",
        ],
        &[("SIGNET_ID_TOKEN", &stranger)],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("forbidden"), "{stderr}");
    assert!(!stderr.contains(&stranger), "the token is never printed");
}

#[derive(Clone)]
struct GitHubEndpoint {
    token: String,
}

/// GitHub Actions' ID token endpoint: bearer `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, `audience` query.
async fn github_token(
    State(endpoint): State<GitHubEndpoint>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("bearer request-secret"));
    if !authorized {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if query.get("audience").map(String::as_str) != Some("signet") {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(Json(json!({"count": 1, "value": endpoint.token})))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_and_environment_tokens_are_used() {
    let s = Signed::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/token", axum::routing::get(github_token))
        .with_state(GitHubEndpoint {
            token: s.h.issuer.mint_default(),
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    // GitHub gives a URL that already has a query string.
    let request_url = format!("http://{address}/token?api-version=2.0");
    let model = s.model.display().to_string();
    let server = s.h.daemon.base_url.clone();
    let args = [
        "sign",
        model.as_str(),
        "--server",
        &server,
        "--key",
        "model-signing",
    ];
    let (code, _, stderr) = signet(
        &args,
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-secret"),
        ],
    );
    assert_eq!(code, 0, "GitHub Actions token: {stderr}");
    assert!(!stderr.contains("request-secret"));

    let (code, _, stderr) = signet(
        &args,
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong"),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("GitHub Actions' ID token endpoint: HTTP 401"),
        "{stderr}"
    );

    // GitLab: an `id_tokens` entry named SIGNET_ID_TOKEN.
    let token = s.h.issuer.mint_default();
    let (code, _, stderr) = signet(&args, &[("SIGNET_ID_TOKEN", &token)]);
    assert_eq!(code, 0, "SIGNET_ID_TOKEN: {stderr}");
    let (code, _, stderr) = s.verify(&s.model, &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssf_model_signing_accepts_model_sig_and_catches_tampering() {
    let s = Signed::new().await;
    // Top-level git files are covered by signet's manifest but left out of the statement, as
    // model-signing ignores them by default.
    std::fs::write(s.model.join(".gitattributes"), "*.bin filter=lfs\n").expect("write");
    let (code, _, stderr) = s.sign(&s.model, "model-signing", None);
    assert_eq!(code, 0, "{stderr}");
    let jwks = s.h.get_json("/.well-known/jwks.json").await;
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(s.model.join("signet-receipt.json")).expect("read"))
            .expect("receipt JSON");
    let pem = s.dir.path().join("pub.pem");
    std::fs::write(
        &pem,
        crate::verify::jwk_to_pem(find_jwk(&jwks, receipt["key_id"].as_str().expect("kid"))),
    )
    .expect("pem");
    let model_signing_verify = |model: &Path| {
        Command::new(python())
            .args(["-m", "model_signing", "verify", "key"])
            .arg(model)
            .arg("--signature")
            .arg(model.join("model.sig"))
            .arg("--public_key")
            .arg(&pem)
            .output()
            .expect("model_signing runs")
    };
    let output = model_signing_verify(&s.model);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "model_signing verify key: {said}");
    assert!(said.contains("Verification succeeded"), "{said}");
    let (code, _, stderr) = s.verify(&s.model, &[]);
    assert_eq!(code, 0, "{stderr}");

    let flipped = s.copy("flipped");
    let weights = flipped.join("weights/layer 1.bin");
    let mut bytes = std::fs::read(&weights).expect("read");
    bytes[0] ^= 0x80;
    std::fs::write(&weights, bytes).expect("write");
    let output = model_signing_verify(&flipped);
    assert!(
        !output.status.success(),
        "model_signing catches a flipped byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_of_ten_thousand_files_signs_and_verifies() {
    let s = Signed::unsigned(|_| {}).await;
    let big = s.dir.path().join("many");
    for i in 0..10_000u32 {
        let dir = big.join(format!("shard-{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("{i}.bin")), i.to_le_bytes()).expect("write");
    }
    let (code, _, stderr) = s.sign(&big, "model-signing", None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("signed 10000 files"), "{stderr}");
    let (code, stdout, stderr) = s.verify(&big, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("verified: 10000 files"), "{stdout}");
    std::fs::remove_file(big.join("shard-042/4242.bin")).expect("rm");
    assert_fails(
        s.verify(&big, &[]),
        "shard-042/4242.bin is in the manifest but missing",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_with_backoff() {
    // The daemon asks the issuer again at most once a second.
    let s = Signed::unsigned(|c| c.refetch_cooldown = "1s".into()).await;
    // The issuer is down: opening a session gets 503 issuer_unavailable until it is back.
    s.h.issuer.set_down(true);
    let args = s.sign_args(&s.model, "model-signing", None);
    let signing = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        signet(&args, &[])
    });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    s.h.issuer.set_down(false);
    let (code, _, stderr) = signing.await.expect("join");
    assert_eq!(
        code, 0,
        "sign retried the 503 until the issuer was back: {stderr}"
    );

    let logs = s.h.daemon.logs();
    let refused = logs.matches("path=/v1/sessions status=503").count();
    assert!(refused >= 1, "the first attempts were refused: {logs}");
    assert_eq!(logs.matches("path=/v1/sessions status=201").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_expires_while_hashing_is_replaced() {
    // Shorter than the ID token's five minutes, which `sign` presents again.
    let h = Harness::in_process_with(|c| c.max_ttl = "2m".into()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    write_model(&model);
    let s = Signed { h, dir, model };
    // A large sparse file keeps `signet sign` hashing for a few seconds; the daemon's clock
    // passes the session's lifetime as soon as the session is opened.
    let weights = std::fs::File::create(s.model.join("weights/big.bin")).expect("create");
    weights.set_len(1 << 28).expect("sparse file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(s.sign_args(&s.model, "model-signing", None))
        .env_remove("SIGNET_ID_TOKEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn signet sign");
    let state = s.h.daemon.state();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = state.clock.now_unix();
        let live = state
            .store
            .live_sessions(&signet::store::SessionScope::All, now)
            .await
            .expect("sessions");
        if !live.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no session opened");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.h.clock().advance(std::time::Duration::from_secs(121));
    let output = tokio::task::spawn_blocking(move || {
        let status = child.wait().expect("wait");
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
        }
        (status, stderr)
    })
    .await
    .expect("join");
    assert!(output.0.success(), "{}", output.1);
    assert!(
        output
            .1
            .contains("the session expired while hashing; opening a new one"),
        "{}",
        output.1
    );
    let (code, _, stderr) = s.verify(&s.model, &[]);
    assert_eq!(code, 0, "{stderr}");
}

/// Each signature in the receipt is also a C2SP tlog-proof that a verifier written from the
/// spec checks without signet; a receipt whose tlog-proof proves something else is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_carry_tlog_proofs_checkable_without_signet() {
    let s = Signed::new().await;
    let vkey = crate::log::log_key(&s.h).await;
    let receipt_path = s.model.join("signet-receipt.json");
    let mut receipt: Value =
        serde_json::from_slice(&std::fs::read(&receipt_path).expect("receipt")).expect("JSON");
    let python = python();
    for (name, proof) in [
        ("manifest", receipt["tlog_proof"].clone()),
        ("model.sig", receipt["model_sig"]["tlog_proof"].clone()),
    ] {
        let text = proof.as_str().expect("a tlog_proof");
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        let file = s.dir.path().join(format!("{name}.tlog-proof"));
        std::fs::write(&file, text).expect("write proof");
        let output = Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/independent/check_tlog_proof.py"
            ))
            .arg(&file)
            .arg(&vkey)
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("kind=signature"),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // The model.sig proof swapped for the manifest's: each verifies alone, but not as this
    // signature's.
    receipt["model_sig"]["tlog_proof"] = receipt["tlog_proof"].clone();
    std::fs::write(&receipt_path, receipt.to_string()).expect("write receipt");
    let (code, _, stderr) = s.verify(&s.model, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("tlog_proof"), "{stderr}");
}
