//! The tamper-evident log: signatures carry their log index, entries and proofs check out
//! (by signet's CLI and by an independent Python script), bad requests get 400/404, and editing
//! the SQLite file is caught.
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Harness, problem, python, sha256_digest};

/// Runs `signet log ARGS` and returns (exit code, stdout, stderr).
pub fn signet_log(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_signet"))
        .arg("log")
        .args(args)
        .output()
        .expect("run signet log");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The log's vkey, as served (tests pin it the way an operator would after checking it).
pub async fn log_key(h: &Harness) -> String {
    h.http
        .get(h.daemon.url("/v1/log/vkey"))
        .send()
        .await
        .expect("vkey")
        .text()
        .await
        .expect("text")
        .trim()
        .to_string()
}

/// The latest checkpoint note, as served.
async fn checkpoint_note(h: &Harness) -> String {
    h.http
        .get(h.daemon.url("/v1/log/checkpoint"))
        .send()
        .await
        .expect("checkpoint")
        .text()
        .await
        .expect("text")
}

/// Waits until the latest checkpoint covers `size` entries.
pub async fn wait_for_checkpoint(h: &Harness, size: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let note = checkpoint_note(h).await;
        let current: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("size line");
        if current >= size {
            return note;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of size {size}: {note}\n{}",
            h.daemon.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn sign_some(h: &Harness, count: u32) -> Vec<Value> {
    let session = h.session_with(Some(json!({"max_signatures": 100}))).await;
    let digests: Vec<String> = (0..count)
        .map(|i| sha256_digest(format!("model {i}").as_bytes()))
        .collect();
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digests": digests}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    body["signatures"].as_array().expect("array").clone()
}

#[tokio::test]
async fn every_signature_is_logged_at_its_index() {
    let h = Harness::start().await;
    let signatures = sign_some(&h, 3).await;
    let indexes: Vec<u64> = signatures
        .iter()
        .map(|s| s["log_index"].as_u64().expect("log_index"))
        .collect();
    assert_eq!(indexes[1], indexes[0] + 1);
    assert_eq!(indexes[2], indexes[0] + 2);
    for signed in &signatures {
        let index = signed["log_index"].as_u64().expect("index");
        let entry = h.get_json(&format!("/v1/log/entries/{index}")).await;
        let event = &entry["entry"];
        assert_eq!(event["kind"], "signature");
        assert_eq!(event["digest"], signed["digest"]);
        assert_eq!(event["signature"], signed["signature"]);
        assert_eq!(event["key_id"], signed["key_id"]);
        assert_eq!(event["key_version"], 1);
        assert_eq!(event["subject"], "repo:acme/models:ref:refs/heads/main");
        assert_eq!(event["policy"], "release");
        assert_eq!(event["issuer"], json!(h.issuer.url));
        assert_eq!(event["claims"]["repository"], "acme/models");
        assert_eq!(event["claims"]["ref"], "refs/heads/main");
        // The leaf is the canonical JSON of the event, and its hash is RFC 9162's.
        let leaf = STANDARD
            .decode(entry["leaf_input"].as_str().expect("leaf_input"))
            .expect("base64");
        assert_eq!(
            serde_json::from_slice::<Value>(&leaf).expect("json"),
            *event
        );
        use sha2::Digest;
        let leaf_hash = sha2::Sha256::digest([&[0u8][..], &leaf].concat());
        assert_eq!(entry["leaf_hash"], json!(STANDARD.encode(leaf_hash)));
    }
}

#[tokio::test]
async fn sessions_and_keys_are_logged_without_tokens() {
    let h = Harness::start().await;
    let id_token = h.issuer.mint_default();
    let response = h.open_session(&id_token, None).await;
    let session: Value = response.json().await.expect("json");
    let token = session["session_token"]
        .as_str()
        .expect("token")
        .to_string();
    let response = h
        .sign(
            &token,
            json!({"key": "model-signing", "digest": sha256_digest(b"m")}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let ended = h
        .http
        .delete(h.daemon.url("/v1/sessions/current"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(ended.status().as_u16(), 204);
    let size = h.get_json("/v1/log/entries?start=0&end=1").await; // at least one entry
    assert!(size.as_array().is_some_and(|a| !a.is_empty()));
    let note = wait_for_checkpoint(&h, 5).await;
    let size: u64 = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("size");
    let entries = h
        .get_json(&format!("/v1/log/entries?start=0&end={size}"))
        .await;
    let kinds: Vec<&str> = entries
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["entry"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "key_created",
            "key_created",
            "session_created",
            "signature",
            "session_ended"
        ]
    );
    let all = entries.to_string();
    let token_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    for secret in [
        token.as_str(),
        &token[4..],
        &token_hash,
        &id_token,
        id_token.rsplit('.').next().expect("sig"),
    ] {
        assert!(!all.contains(secret), "a token or its hash is in the log");
    }
    let mut created: Vec<&str> = (0..2)
        .map(|i| entries[i]["entry"]["key"].as_str().expect("key"))
        .collect();
    created.sort();
    assert_eq!(created, ["log-signing", "model-signing"]);
    assert!(
        entries[0]["entry"]["public_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
}

#[tokio::test]
async fn checkpoint_is_an_ed25519_note_accepted_only_under_the_pinned_log_key() {
    let h = Harness::start().await;
    let _ = sign_some(&h, 2).await;
    let response = h
        .http
        .get(h.daemon.url("/v1/log/checkpoint"))
        .send()
        .await
        .expect("get");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let note = wait_for_checkpoint(&h, 5).await;
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines[0], "signet.test/log");
    assert!(lines[3].starts_with("time "), "{note}");
    assert_eq!(lines[4], "", "blank line before the signature");
    assert!(lines[5].starts_with("\u{2014} signet.test/log "), "{note}");
    // The vkey: origin, the C2SP key ID, an Ed25519 key; and the log key is not in the JWKS.
    let vkey = log_key(&h).await;
    let parsed = signet::note::VerifierKey::parse(&vkey).expect("a C2SP Ed25519 vkey");
    assert_eq!(parsed.name(), "signet.test/log");
    let jwks = h.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["kty"] != "OKP"),
        "{jwks}"
    );
    let keys = h.get_json("/v1/keys").await;
    let log_listing = keys
        .as_array()
        .expect("list")
        .iter()
        .find(|k| k["name"] == "log-signing")
        .expect("listed");
    assert_eq!(log_listing["role"], "log");
    assert_eq!(log_listing["algorithm"], "EdDSA");

    // No pin: refused, naming the options.
    let (code, _, stderr) = signet_log(&["checkpoint", "--server", &h.daemon.base_url]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--log-key") && stderr.contains("--trust-on-first-use"),
        "{stderr}"
    );
    let (code, stdout, stderr) = signet_log(&[
        "checkpoint",
        "--server",
        &h.daemon.base_url,
        "--log-key",
        &vkey,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("signet.test/log\n"));
    // Another key of the same name (what a forger holds): exit 1 naming the signature.
    let other = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let forged_vkey =
        signet::note::VerifierKey::new("signet.test/log", &other.verifying_key().to_bytes())
            .expect("vkey")
            .to_vkey();
    let (code, _, stderr) = signet_log(&[
        "checkpoint",
        "--server",
        &h.daemon.base_url,
        "--log-key",
        &forged_vkey,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not signed by"), "{stderr}");
}

/// Runs `tests/independent/check_log.py SERVER INDEX VKEY` (Python `cryptography`, the C2SP
/// key ID computed there) and asserts it accepts the checkpoint and the entry's inclusion.
pub fn python_check(h: &Harness, index: u64, vkey: &str) {
    let python = python();
    let output = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/independent/check_log.py"
        ))
        .arg(&h.daemon.base_url)
        .arg(index.to_string())
        .arg(vkey)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("OK signet.test/log"), "{stdout}");
    assert!(stdout.contains("kind=signature"), "{stdout}");
}

#[tokio::test]
async fn an_independent_python_verifier_accepts_checkpoint_and_inclusion() {
    let h = Harness::start().await;
    let signatures = sign_some(&h, 3).await;
    let index = signatures[1]["log_index"].as_u64().expect("index");
    wait_for_checkpoint(&h, index + 1).await;
    python_check(&h, index, &log_key(&h).await);
}

#[tokio::test]
async fn cli_verify_and_prove_succeed_on_an_honest_log() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let first = sign_some(&h, 2).await;
    wait_for_checkpoint(&h, first[1]["log_index"].as_u64().expect("index") + 1).await;
    let (code, stdout, stderr) = signet_log(&[
        "verify",
        "--server",
        &h.daemon.base_url,
        "--state",
        state,
        "--full",
        "--trust-on-first-use",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("trusting the server's log key on first use"),
        "{stderr}"
    );
    assert!(stdout.contains("remembered with its log key"), "{stdout}");
    let remembered: Value =
        serde_json::from_str(&std::fs::read_to_string(state).expect("state")).expect("json");
    assert_eq!(remembered["log_key"], log_key(&h).await.as_str());
    let more = sign_some(&h, 5).await;
    let last = more[4]["log_index"].as_u64().expect("index");
    wait_for_checkpoint(&h, last + 1).await;
    let (code, stdout, stderr) =
        signet_log(&["verify", "--server", &h.daemon.base_url, "--state", state]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("consistent with the remembered checkpoint"),
        "{stdout}"
    );
    let (code, stdout, stderr) = signet_log(&[
        "prove",
        "--server",
        &h.daemon.base_url,
        "--index",
        &last.to_string(),
        "--state",
        state,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(more[4]["signature"].as_str().expect("sig")),
        "{stdout}"
    );
}

#[tokio::test]
async fn bad_log_requests_are_400_or_404() {
    let h = Harness::start().await;
    let _ = sign_some(&h, 2).await;
    let size: u64 = wait_for_checkpoint(&h, 5)
        .await
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("size");
    let cases = [
        ("/v1/log/entries/abc", 400, "invalid_request"),
        ("/v1/log/entries/-1", 400, "invalid_request"),
        (
            "/v1/log/entries/99999999999999999999999",
            400,
            "invalid_request",
        ),
        ("/v1/log/entries/1000", 404, "not_found"),
        ("/v1/log/entries?start=3&end=2", 400, "invalid_request"),
        ("/v1/log/entries?start=0&end=5000", 400, "invalid_request"),
        ("/v1/log/entries?start=0", 400, "invalid_request"),
        (
            "/v1/log/proof/inclusion?index=5&tree_size=5",
            400,
            "invalid_request",
        ),
        (
            "/v1/log/proof/inclusion?index=0&tree_size=0",
            400,
            "invalid_request",
        ),
        (
            "/v1/log/proof/inclusion?index=0&tree_size=100000",
            404,
            "not_found",
        ),
        (
            "/v1/log/proof/inclusion?index=x&tree_size=2",
            400,
            "invalid_request",
        ),
        ("/v1/log/proof/inclusion", 400, "invalid_request"),
        (
            "/v1/log/proof/consistency?from=0&to=3",
            400,
            "invalid_request",
        ),
        (
            "/v1/log/proof/consistency?from=4&to=3",
            400,
            "invalid_request",
        ),
        (
            "/v1/log/proof/consistency?from=1&to=100000",
            404,
            "not_found",
        ),
    ];
    for (path, status, code) in cases {
        let response = h.http.get(h.daemon.url(path)).send().await.expect("get");
        assert_eq!(
            problem(response).await,
            (status, code.to_string()),
            "{path} (log size {size})"
        );
    }
    let ok = h
        .http
        .get(
            h.daemon
                .url(&format!("/v1/log/proof/consistency?from={size}&to={size}")),
        )
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status().as_u16(), 200);
}

/// Stops the daemon, runs `edit` on its SQLite file, starts it again.
async fn tamper(h: Harness, edit: &str) -> Harness {
    h.restart(|dir| {
        let connection = rusqlite::Connection::open(dir.join("signet.db")).expect("open db");
        connection.execute_batch(edit).expect("tamper");
    })
    .await
}

#[tokio::test]
async fn an_edited_entry_is_caught_by_full_verification() {
    let h = Harness::start().await;
    let vkey = log_key(&h).await;
    let signatures = sign_some(&h, 4).await;
    let target = signatures[2]["log_index"].as_u64().expect("index");
    wait_for_checkpoint(&h, target + 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let (code, _, stderr) = signet_log(&[
        "verify",
        "--server",
        &h.daemon.base_url,
        "--state",
        state,
        "--full",
        "--log-key",
        &vkey,
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Rewrite the signed digest in the entry and recompute its leaf hash, as a careful attacker would.
    let h = tamper(
        h,
        &format!(
            "UPDATE log_entries SET leaf = CAST(REPLACE(CAST(leaf AS TEXT), 'model-signing', 'model-signinG') AS BLOB) WHERE idx = {target};"
        ),
    )
    .await;
    let edited = rusqlite::Connection::open(h.hsm.dir.path().join("signet.db")).expect("db");
    let leaf: Vec<u8> = edited
        .query_row(
            "SELECT leaf FROM log_entries WHERE idx = ?1",
            [target as i64],
            |r| r.get(0),
        )
        .expect("row");
    use sha2::Digest;
    let hash = sha2::Sha256::digest([&[0u8][..], &leaf].concat()).to_vec();
    edited
        .execute(
            "UPDATE log_entries SET leaf_hash = ?1 WHERE idx = ?2",
            rusqlite::params![hash, target as i64],
        )
        .expect("rehash");
    let (code, stdout, stderr) = signet_log(&[
        "verify",
        "--server",
        &h.daemon.base_url,
        "--state",
        state,
        "--full",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("entry {target}")), "{stderr}");
}

#[tokio::test]
async fn a_deleted_entry_is_caught() {
    let h = Harness::start().await;
    let signatures = sign_some(&h, 3).await;
    let target = signatures[1]["log_index"].as_u64().expect("index");
    wait_for_checkpoint(&h, target + 2).await;
    let vkey = log_key(&h).await;
    let h = tamper(h, &format!("DELETE FROM log_entries WHERE idx = {target};")).await;
    let (code, stdout, stderr) = signet_log(&[
        "verify",
        "--server",
        &h.daemon.base_url,
        "--full",
        "--log-key",
        &vkey,
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("entry {target}")), "{stderr}");
}

#[tokio::test]
async fn an_edited_node_is_caught_by_consistency_with_an_earlier_checkpoint() {
    let h = Harness::start().await;
    let _ = sign_some(&h, 3).await;
    let note = wait_for_checkpoint(&h, 6).await;
    let size: u64 = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("size");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let vkey = log_key(&h).await;
    let (code, _, stderr) = signet_log(&[
        "verify",
        "--server",
        &h.daemon.base_url,
        "--state",
        state,
        "--log-key",
        &vkey,
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Corrupt the stored hash of the first four leaves' subtree.
    let h = tamper(
        h,
        "UPDATE log_nodes SET hash = zeroblob(32) WHERE level = 2 AND last_leaf = 3;",
    )
    .await;
    let _ = sign_some(&h, 2).await;
    // The daemon refuses to sign a checkpoint that does not extend the last one: readiness
    // fails on the log...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let (status, body) = h.readyz().await;
        if status == 503 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "still ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["failing"][0]["component"], "log", "{body}");
    // ...no checkpoint covers the new entries...
    let latest = checkpoint_note(&h).await;
    assert!(
        latest.starts_with(&format!("signet.test/log\n{size}\n")),
        "{latest}"
    );
    assert!(
        h.daemon.logs().contains("inconsistent"),
        "the refusal is logged"
    );
    // ...and the proofs it now serves do not verify against the remembered checkpoint.
    // Entry 4's proof in the tree of 6 uses the subtree of leaves 0..4.
    let (code, stdout, stderr) = signet_log(&[
        "prove",
        "--server",
        &h.daemon.base_url,
        "--index",
        "4",
        "--wait",
        "1s",
        "--state",
        state,
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("entry 4"), "{stderr}");
}

#[tokio::test]
async fn a_rewritten_history_gets_no_checkpoint_even_with_the_checkpoints_table_edited() {
    let h = Harness::start().await;
    let signatures = sign_some(&h, 4).await;
    let last = signatures[3]["log_index"].as_u64().expect("index");
    let note = wait_for_checkpoint(&h, last + 1).await;
    let signed_size: u64 = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("size");
    // A database edit that leaves a self-consistent, shorter tree and no record of the
    // checkpoints signed over the longer one: only the anchor beside the store remembers.
    let cut = signed_size - 3;
    let h = tamper(
        h,
        &format!(
            "DELETE FROM log_entries WHERE idx >= {cut}; \
             DELETE FROM log_nodes WHERE last_leaf >= {cut}; \
             DELETE FROM log_checkpoints;"
        ),
    )
    .await;
    let _ = sign_some(&h, 2).await;
    let (status, body) = h.readyz().await;
    assert_eq!(status, 503, "{}", h.daemon.logs());
    assert_eq!(body["failing"][0]["component"], "log", "{body}");
    assert!(
        h.daemon.logs().contains("entries were removed"),
        "{}",
        h.daemon.logs()
    );
    // Nothing was signed over the rewritten history.
    let response = h
        .http
        .get(h.daemon.url("/v1/log/checkpoint"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 404);
}

/// Runs `tests/independent/check_tiles.py PREFIX VKEY`, a tlog-tiles client written from the
/// C2SP spec (Python `cryptography` for the note), and returns what it printed.
fn tiles_check(h: &Harness, vkey: &str) -> String {
    let python = python();
    let output = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/independent/check_tiles.py"
        ))
        .arg(h.daemon.url("/log"))
        .arg(vkey)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The log served as C2SP tlog-tiles agrees with a client written from the spec: at a size with
/// only partial tiles, and past a full level-0 tile (full and partial tiles, a level-1 tile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiles_agree_with_an_independent_tlog_tiles_client() {
    let h = Harness::start_with(|c| c.max_signatures = 1000).await;
    let vkey = log_key(&h).await;
    let session = h.session().await;
    for (round, count) in [(0u32, 5u32), (1, 300)] {
        let last = h
            .sign_batch(&session, &format!("tiles {round}"), count)
            .await;
        let note = wait_for_checkpoint(&h, last + 1).await;
        let size: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("size");
        let stdout = tiles_check(&h, &vkey);
        assert!(
            stdout.starts_with(&format!("OK signet.test/log size={size} ")),
            "{stdout}"
        );
        if size > 256 {
            assert!(stdout.contains("levels=2"), "{stdout}");
        }
    }
    // Paths the spec does not allow, and tiles the tree does not have, are 404.
    for path in [
        "tile/0/0",
        "tile/00/000",
        "tile/0/000.p/0",
        "tile/0/x000",
        "tile/64/000",
    ] {
        let response = h
            .http
            .get(h.daemon.url(&format!("/log/{path}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    let response = h
        .http
        .get(h.daemon.url("/log/tile/entries/x001/000"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 404);
}

/// Past 65,536 entries the tree has level-2 tiles; the independent client still agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiles_past_65536_entries_agree_with_an_independent_client() {
    let h = Harness::start_with(|c| c.max_signatures = 70_000).await;
    let vkey = log_key(&h).await;
    let session = h.session().await;
    let mut last = 0;
    for batch in 0..66u32 {
        last = h.sign_batch(&session, &batch.to_string(), 1000).await;
    }
    assert!(last >= 65_536);
    wait_for_checkpoint(&h, last + 1).await;
    let stdout = tiles_check(&h, &vkey);
    assert!(stdout.contains("levels=3"), "{stdout}");
}
