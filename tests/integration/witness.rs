//! `signet witness serve`, a C2SP tlog-witness, in front of a real signet log: it cosigns
//! checkpoints consistent with what it cosigned before, and refuses everything else with the
//! spec's answers. Cosignatures are checked here with code written from tlog-cosignature, not
//! signet's.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use crate::harness::Harness;
use crate::log::{log_key, wait_for_checkpoint};
use crate::workflow::signet;

const WITNESS: &str = "witness.test/w1";

/// A `signet witness serve` process; killed when dropped.
struct WitnessProcess {
    url: String,
    child: Child,
}

impl WitnessProcess {
    fn start(config: &Path) -> WitnessProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signet"))
            .args(["witness", "serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn signet witness serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("signet witness listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_string();
        WitnessProcess { url, child }
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST add-checkpoint; (status, content type, body).
async fn add_checkpoint(witness: &WitnessProcess, body: String) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/add-checkpoint", witness.url))
        .body(body)
        .send()
        .await
        .expect("POST add-checkpoint");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.expect("body"))
}

fn request(old: u64, proof: &[String], checkpoint: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(hash);
        body.push('\n');
    }
    format!("{body}\n{checkpoint}")
}

/// Checks a cosignature line under a witness vkey as tlog-cosignature v1 says; returns its time.
fn verify_cosignature(vkey: &str, checkpoint: &str, line: &str) -> u64 {
    let mut parts = vkey.trim().splitn(3, '+');
    let (name, id_hex, key) = (
        parts.next().expect("name"),
        parts.next().expect("id"),
        STANDARD.decode(parts.next().expect("key")).expect("base64"),
    );
    assert_eq!(key[0], 0x04, "a cosignature vkey has type 0x04");
    let id = &Sha256::digest([name.as_bytes(), b"\n", &key[..]].concat())[..4];
    assert_eq!(hex::encode(id), id_hex);
    let public = ed25519_dalek::VerifyingKey::from_bytes(&key[1..].try_into().expect("32 bytes"))
        .expect("key");
    let (line_name, blob) = line
        .trim_end()
        .strip_prefix("\u{2014} ")
        .and_then(|l| l.split_once(' '))
        .expect("a signature line");
    assert_eq!(line_name, name);
    let blob = STANDARD.decode(blob).expect("base64");
    assert_eq!(blob.len(), 4 + 8 + 64);
    assert_eq!(&blob[..4], id);
    let timestamp = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
    let body = &checkpoint[..checkpoint.find("\n\n").expect("note") + 1];
    let message = format!("cosignature/v1\ntime {timestamp}\n{body}");
    let signature = ed25519_dalek::Signature::from_slice(&blob[12..]).expect("signature");
    public
        .verify_strict(message.as_bytes(), &signature)
        .expect("the cosignature verifies");
    timestamp
}

async fn consistency(h: &Harness, from: u64, to: u64) -> Vec<String> {
    let proof = h
        .get_json(&format!("/v1/log/proof/consistency?from={from}&to={to}"))
        .await;
    proof["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| h.as_str().expect("hash").to_string())
        .collect()
}

fn size_of(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("size")
}

fn witness_config(dir: &Path, log_vkey: &str) -> (PathBuf, String) {
    let key_file = dir.join("witness.pem");
    let key_arg = key_file.display().to_string();
    let keygen = || {
        signet(
            &[
                "witness",
                "keygen",
                "--name",
                WITNESS,
                "--key-file",
                &key_arg,
            ],
            &[],
        )
    };
    let (code, vkey, stderr) = keygen();
    assert_eq!(code, 0, "{stderr}");
    // An existing key is never overwritten.
    let (code, _, stderr) = keygen();
    assert_eq!(code, 2, "{stderr}");
    let config = dir.join("witness.toml");
    std::fs::write(
        &config,
        format!(
            "[witness]\nname = \"{WITNESS}\"\nlisten = \"127.0.0.1:0\"\nkey_file = \"{}\"\nstate = \"sqlite://{}\"\n\n[[witness.logs]]\norigin = \"signet.test/log\"\nvkey = \"{log_vkey}\"\n",
            key_file.display(),
            dir.join("state.db").display()
        ),
    )
    .expect("config");
    (config, vkey.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_only_consistent_checkpoints_signed_by_the_log() {
    let h = Harness::start().await;
    let log_vkey = log_key(&h).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, witness_vkey) = witness_config(dir.path(), &log_vkey);
    let witness = WitnessProcess::start(&config);

    // First contact: old 0, no proof.
    let first = wait_for_checkpoint(&h, 1).await;
    let first_size = size_of(&first);
    let (status, _, body) = add_checkpoint(&witness, request(0, &[], &first)).await;
    assert_eq!(status, 200, "{body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let timestamp = verify_cosignature(&witness_vkey, &first, &body);
    assert!(timestamp.abs_diff(now) < 60, "timestamped now");

    // The log grows. A stale old size is told the witness's size.
    let session = h.session().await;
    let last = h.sign_batch(&session, "witnessed", 5).await;
    let second = wait_for_checkpoint(&h, last + 1).await;
    let second_size = size_of(&second);
    let (status, content_type, body) = add_checkpoint(&witness, request(0, &[], &second)).await;
    assert_eq!(
        (status, content_type.as_str(), body.as_str()),
        (409, "text/x.tlog.size", format!("{first_size}\n").as_str())
    );

    // A consistency proof that does not verify: 422.
    let proof = consistency(&h, first_size, second_size).await;
    let mut bad = proof.clone();
    let mut hash = STANDARD.decode(&bad[0]).expect("hash");
    hash[0] ^= 1;
    bad[0] = STANDARD.encode(hash);
    let (status, _, body) = add_checkpoint(&witness, request(first_size, &bad, &second)).await;
    assert_eq!(status, 422, "{body}");

    // The right proof: cosigned.
    let (status, _, body) = add_checkpoint(&witness, request(first_size, &proof, &second)).await;
    assert_eq!(status, 200, "{body}");
    verify_cosignature(&witness_vkey, &second, &body);
    // The same tree again is cosigned again; an older one is past nothing: 400.
    let (status, _, _) = add_checkpoint(&witness, request(second_size, &[], &second)).await;
    assert_eq!(status, 200);
    let (status, _, _) = add_checkpoint(&witness, request(second_size, &[], &first)).await;
    assert_eq!(status, 400);

    // A checkpoint of another history, signed by a key that is not the log's under the log's
    // name: 403, whatever the proof.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let body_text = &second[..second.find("\n\n").expect("note") + 1];
    let forged_body = body_text.replacen(
        body_text.lines().nth(2).expect("root"),
        &STANDARD.encode([9u8; 32]),
        1,
    );
    let id = &Sha256::digest(
        [
            b"signet.test/log\n\x01".as_slice(),
            forger.verifying_key().as_bytes(),
        ]
        .concat(),
    )[..4];
    let mut blob = id.to_vec();
    blob.extend_from_slice(&forger.sign(forged_body.as_bytes()).to_bytes());
    let forged = format!(
        "{forged_body}\n\u{2014} signet.test/log {}\n",
        STANDARD.encode(blob)
    );
    let (status, _, body) = add_checkpoint(&witness, request(second_size, &[], &forged)).await;
    assert_eq!(status, 403, "{body}");
    // A log the witness does not follow: 404.
    let other = second.replace("signet.test/log", "other.test/log");
    let (status, _, _) = add_checkpoint(&witness, request(0, &[], &other)).await;
    assert_eq!(status, 404);
    // Garbage: 400.
    let (status, _, _) = add_checkpoint(&witness, "old 01\n\nnot a note".into()).await;
    assert_eq!(status, 400);

    // The witness's view survives a restart: a log presenting size 0 again is told its size.
    drop(witness);
    let witness = WitnessProcess::start(&config);
    let (status, content_type, body) = add_checkpoint(&witness, request(0, &[], &second)).await;
    assert_eq!(
        (status, content_type.as_str(), body.as_str()),
        (409, "text/x.tlog.size", format!("{second_size}\n").as_str())
    );
}
