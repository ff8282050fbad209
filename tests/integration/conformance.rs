//! One conformance suite, run once per backend (as rustls runs one suite per crypto provider):
//! every backend must create missing keys inside itself, publish stable kids, sign digests that
//! an independent verifier accepts for every algorithm it supports, refuse bad digests before
//! calling the backend, answer 503 within the timeout when the backend is down and recover by
//! itself, and never return a signature from a corrupted answer.
//!
//! Each backend module (`pkcs11`, `vault`, `aws`, `gcp`) implements [`UnderTest`] for its real
//! server (SoftHSM, OpenBao, LocalStack, the GCP fake) and instantiates the suite's tests.
// A build without the cloud backends runs only the PKCS#11 part of the suite.
#![cfg_attr(
    not(any(feature = "vault", feature = "aws", feature = "gcp")),
    allow(dead_code)
)]
/// The suite's tests for one backend, each on a fresh instance that `$start` makes; a new
/// backend adds one line: `conformance::suite!(Kms::start().await; keys_and_signatures, …);`.
macro_rules! suite {
    ($start:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                crate::conformance::$test($start).await;
            }
        )+
    };
}
pub(crate) use suite;

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "gcp")]
mod gcp;
mod pkcs11;
#[cfg(feature = "vault")]
mod vault;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest;

use crate::harness::{Harness, problem};
use crate::verify::{check, find_jwk};

/// The backend's name in the daemon's config.
pub const BACKEND: &str = "under_test";
/// The per-call timeout configured for it: an outage must give 503 within it.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A real backend server the suite drives.
pub trait UnderTest: Send {
    /// The JOSE algorithms this backend supports.
    fn algorithms(&self) -> &'static [&'static str];
    /// `[backends.under_test]`, with `timeout` set to [`TIMEOUT`].
    fn backend_toml(&self) -> String;
    /// Environment for the daemon (credentials).
    fn env(&self) -> Vec<(String, String)>;
    /// Takes the backend down.
    fn stop(&mut self) -> impl Future<Output = ()> + Send;
    /// Brings it back, with its keys.
    fn restart(&mut self) -> impl Future<Output = ()> + Send;
    /// Makes its answers well-formed but with wrong signatures (or checksums), or stops that.
    fn set_corrupt(&mut self, on: bool);
}

/// The key name the suite uses for `algorithm`.
pub fn key_name(algorithm: &str) -> String {
    format!("conformance-{}", algorithm.to_ascii_lowercase())
}

/// A daemon whose keys (one per algorithm) all live in the backend under test; the log key
/// stays on SoftHSM.
pub async fn daemon_for<B: UnderTest>(backend: &B) -> Harness {
    let toml = backend.backend_toml();
    let env = backend.env();
    let algorithms = backend.algorithms();
    Harness::start_with(|config| {
        config.policy_keys.clear();
        for algorithm in algorithms {
            config.add_key_on(&key_name(algorithm), algorithm, BACKEND);
            config.key_lines(&key_name(algorithm), "grace_period = \"3s\"");
        }
        let names: Vec<String> = algorithms.iter().map(|a| key_name(a)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        config.add_admin_policy("acme/security", &names);
        config.extra.push_str(&toml);
        config.env = env;
        config.max_signatures = 1000;
    })
    .await
}

/// A random digest of the algorithm's hash.
pub fn random_digest(algorithm: &str) -> String {
    let data: [u8; 32] = rand::random();
    if algorithm == "ES384" {
        format!("sha384:{}", hex::encode(sha2::Sha384::digest(data)))
    } else {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
    }
}

/// Signs `count` random digests with the algorithm's key; returns the response.
pub async fn sign(h: &Harness, session: &str, algorithm: &str, count: usize) -> reqwest::Response {
    let digests: Vec<String> = (0..count).map(|_| random_digest(algorithm)).collect();
    h.sign(
        session,
        json!({"key": key_name(algorithm), "digests": digests}),
    )
    .await
}

/// Signs and checks every signature against the JWKS with RustCrypto (not signet's code).
pub async fn sign_and_verify(h: &Harness, session: &str, algorithm: &str) -> Vec<Value> {
    let response = sign(h, session, algorithm, 3).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{algorithm}: {body}\n{}", h.daemon.logs());
    let jwks = h.jwks().await;
    let signatures = body["signatures"].as_array().expect("signatures").clone();
    for signed in &signatures {
        assert_eq!(signed["algorithm"], algorithm);
        let jwk = find_jwk(&jwks, signed["key_id"].as_str().expect("kid"));
        let digest = signed["digest"].as_str().expect("digest");
        let digest = hex::decode(digest.split_once(':').expect("prefix").1).expect("hex");
        let signature = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            signed["signature"].as_str().expect("signature"),
        )
        .expect("base64");
        assert!(
            check(jwk, &digest, &signature),
            "{algorithm} signature does not verify independently"
        );
    }
    signatures
}

/// The log key kept in the backend under test (created there, Ed25519): its checkpoints are
/// C2SP signed notes that verifiers not written by us accept under the published vkey:
/// Cloudflare's `signed_note` crate and the Python `cryptography` script.
pub async fn log_key_in_backend<B: UnderTest>(backend: B) {
    let toml = backend.backend_toml();
    let env = backend.env();
    let h = Harness::start_with(|config| {
        for key in config.keys.iter_mut().filter(|k| k.name == "log-signing") {
            key.backend = BACKEND.into();
            key.backend_key = Some("conformance-log".into());
        }
        config.extra.push_str(&toml);
        config.env = env;
    })
    .await;
    let keys = h.get_json("/v1/keys").await;
    let log_key = keys
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "log-signing")
        .expect("listed");
    assert_eq!(log_key["backend"], BACKEND, "{keys}");
    assert_eq!(log_key["role"], "log");
    let session = h.session().await;
    let response = h
        .sign(
            &session,
            json!({"key": "model-signing", "digest": crate::harness::sha256_digest(b"log")}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200, "{}", h.daemon.logs());
    let body: Value = response.json().await.expect("JSON");
    let index = body["signatures"][0]["log_index"].as_u64().expect("index");
    let note = crate::log::wait_for_checkpoint(&h, index + 1).await;
    let vkey = crate::log::log_key(&h).await;

    let verifier = signed_note::StandardVerifier::new(&vkey).expect("signed_note takes the vkey");
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).expect("a signed note");
    let (verified, _) = parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .expect("signed_note accepts the checkpoint");
    assert_eq!(verified.len(), 1);
    // A checkpoint whose tree size changed under its signature is refused by it too.
    let size = note.lines().nth(1).expect("size line");
    let tampered = note.replacen(&format!("\n{size}\n"), &format!("\n{size}0\n"), 1);
    let verifier = signed_note::StandardVerifier::new(&vkey).expect("vkey");
    let parsed = signed_note::Note::from_bytes(tampered.as_bytes()).expect("a signed note");
    assert!(
        parsed
            .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
            .is_err()
    );
    crate::log::python_check(&h, index, &vkey);
}

/// Keys created when missing, stable kids across restarts, signatures every independent
/// verifier accepts, bad digests refused before the backend is called.
pub async fn keys_and_signatures<B: UnderTest>(mut backend: B) {
    let h = daemon_for(&backend).await;
    let keys = h.get_json("/v1/keys").await;
    for algorithm in backend.algorithms() {
        let key = keys
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["name"] == key_name(algorithm).as_str())
            .unwrap_or_else(|| panic!("{algorithm} key listed: {keys}"));
        assert_eq!(key["backend"], BACKEND);
        assert_eq!(key["algorithm"], *algorithm);
        assert_eq!(key["versions"].as_array().expect("versions").len(), 1);
        assert!(
            h.daemon
                .logs()
                .contains("created version 1 inside the backend"),
            "keys were created inside the backend"
        );
    }
    let session = h.session().await;
    for algorithm in backend.algorithms() {
        sign_and_verify(&h, &session, algorithm).await;
    }

    // A digest of the wrong length or hash is refused with 400 before the backend is asked:
    // with the backend down, the answer is still 400, not 503.
    backend.stop().await;
    for algorithm in backend.algorithms() {
        let short =
            json!({"key": key_name(algorithm), "digest": format!("sha256:{}", "ab".repeat(31))});
        let (status, code) = problem(h.sign(&session, short).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{algorithm}"
        );
        let other_hash = if *algorithm == "ES384" {
            format!("sha256:{}", "ab".repeat(32))
        } else {
            format!("sha384:{}", "ab".repeat(48))
        };
        let mismatched = json!({"key": key_name(algorithm), "digest": other_hash});
        let (status, code) = problem(h.sign(&session, mismatched).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{algorithm}"
        );
    }
    backend.restart().await;

    // The kids are the thumbprints of the backend's keys: the same after a restart, with no new
    // key created.
    let kids_before = kids(&h.jwks().await);
    let h = h.restart(|_| {}).await;
    assert_eq!(
        kids(&h.jwks().await),
        kids_before,
        "kids stable across restarts"
    );
    let keys = h.get_json("/v1/keys").await;
    for key in keys.as_array().expect("keys") {
        assert_eq!(
            key["versions"].as_array().expect("versions").len(),
            1,
            "{key}"
        );
    }
    let session = h.session().await;
    for algorithm in backend.algorithms() {
        sign_and_verify(&h, &session, algorithm).await;
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect();
    kids.sort();
    kids
}

/// A backend that goes down gives 503 `backend_unavailable` naming it within the timeout, and
/// `/readyz` says which; when it returns, signing works again without a restart.
pub async fn outage_and_recovery<B: UnderTest>(mut backend: B) {
    let h = daemon_for(&backend).await;
    let session = h.session().await;
    let algorithm = backend.algorithms()[0];
    sign_and_verify(&h, &session, algorithm).await;

    backend.stop().await;
    let started = Instant::now();
    let response = sign(&h, &session, algorithm, 1).await;
    let elapsed = started.elapsed();
    let (status, code) = problem(response).await;
    assert_eq!((status, code.as_str()), (503, "backend_unavailable"));
    assert!(
        elapsed < TIMEOUT + Duration::from_secs(1),
        "503 within the backend timeout ({TIMEOUT:?}), took {elapsed:?}"
    );
    let ready = h
        .http
        .get(h.daemon.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().await.expect("JSON");
    assert!(
        ready["failing"]
            .as_array()
            .expect("failing")
            .iter()
            .any(|f| f["component"] == format!("backend:{BACKEND}")),
        "{ready}"
    );
    assert!(!h.daemon.logs().contains("panicked"));

    backend.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = sign(&h, &session, algorithm, 1).await;
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "signing did not recover: {}",
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sign_and_verify(&h, &session, algorithm).await;
    let ready = h
        .http
        .get(h.daemon.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200, "ready again");
}

/// A corrupted answer never becomes a signature, nor a log entry.
pub async fn corrupted_answers_never_sign<B: UnderTest>(mut backend: B) {
    let h = daemon_for(&backend).await;
    let session = h.session().await;
    for algorithm in backend.algorithms() {
        let before = sign_and_verify(&h, &session, algorithm).await;
        let last_index = before.last().expect("signed")["log_index"]
            .as_u64()
            .expect("index");
        backend.set_corrupt(true);
        let (status, code) = problem(sign(&h, &session, algorithm, 2).await).await;
        assert_eq!(
            (status, code.as_str()),
            (503, "backend_unavailable"),
            "{algorithm}"
        );
        backend.set_corrupt(false);
        let after = sign_and_verify(&h, &session, algorithm).await;
        assert_eq!(
            after[0]["log_index"].as_u64(),
            Some(last_index + 1),
            "{algorithm}: nothing was logged for the corrupted answer"
        );
    }
}

/// Rotation inside the backend: the new version signs, both are published, signatures by the old
/// one still verify, and after the grace period the old one leaves the JWKS but stays listed.
pub async fn rotation<B: UnderTest>(backend: B) {
    let h = daemon_for(&backend).await;
    let session = h.session().await;
    let admin = crate::rotation::admin_token(&h);
    for algorithm in backend.algorithms() {
        let name = key_name(algorithm);
        let before = sign_and_verify(&h, &session, algorithm).await;
        assert_eq!(before[0]["key_version"], 1);
        let response = crate::rotation::rotate(&h, &name, &admin).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, 200, "{algorithm}: {body}\n{}", h.daemon.logs());
        assert_eq!(body["version"], 2);
        let after = sign_and_verify(&h, &session, algorithm).await;
        assert_eq!(after[0]["key_version"], 2, "{algorithm}");
        assert_ne!(after[0]["key_id"], before[0]["key_id"]);
        let jwks = h.jwks().await;
        for signed in before.iter().chain(&after) {
            crate::verify::verify_signature(&jwks, signed);
        }
    }
    // Grace period 3 s: the scheduler retires every version 1.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys = h.get_json("/v1/keys").await;
        let retired = keys
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["backend"] == BACKEND)
            .all(|k| {
                k["versions"][0]["state"] == "retired" && k["versions"][1]["state"] == "active"
            });
        if retired {
            break;
        }
        assert!(Instant::now() < deadline, "not retired: {keys}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let jwks = h.jwks().await;
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    let keys = h.get_json("/v1/keys").await;
    for key in keys
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["backend"] == BACKEND)
    {
        let old = key["versions"][0]["key_id"].as_str().expect("kid");
        let new = key["versions"][1]["key_id"].as_str().expect("kid");
        assert!(!published.contains(&old), "retired version left the JWKS");
        assert!(published.contains(&new));
    }
}
