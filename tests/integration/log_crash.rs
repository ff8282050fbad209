//! Crash safety of the log: eight clients sign while the daemon is killed with SIGKILL five
//! times. Every signature a client got an answer for must be in the log at its `log_index`, the
//! final checkpoint must extend every checkpoint seen before, and the full rehash must pass.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use signet::checkpoint::verify_checkpoint;
use signet::merkle::{Hash, verify_consistency};
use signet::note::VerifierKey;

use crate::harness::{Daemon, Harness, sha256_digest};
use crate::log::signet_log;

const CLIENTS: usize = 8;
const KILLS: usize = 5;

#[derive(Clone)]
struct Acknowledged {
    index: u64,
    digest: String,
    signature: String,
}

async fn open_session(http: &reqwest::Client, base: &str, id_token: &str) -> String {
    let response = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(id_token)
        .json(&json!({"max_signatures": 100000}))
        .send()
        .await
        .expect("session");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    body["session_token"].as_str().expect("token").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_signatures_survive_kill_9() {
    let h = Harness::start_with(|c| {
        c.max_signatures = 100_000;
        c.max_ttl = "1h".into();
    })
    .await;
    let Harness {
        hsm,
        issuer,
        daemon,
        http,
    } = h;
    let config_path = daemon.config_path.clone();
    let log_key = VerifierKey::parse(
        &http
            .get(daemon.url("/v1/log/vkey"))
            .send()
            .await
            .expect("vkey")
            .text()
            .await
            .expect("text"),
    )
    .expect("the log's vkey");
    let acknowledged = Arc::new(Mutex::new(Vec::<Acknowledged>::new()));
    let checkpoints = Arc::new(Mutex::new(Vec::<(u64, Hash)>::new()));
    let mut daemon = Some(daemon);

    for round in 0..KILLS {
        let running = daemon.take().expect("daemon");
        let base = running.base_url.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let session = open_session(&http, &base, &issuer.mint_default()).await;
            let (http, base, stop, acknowledged) = (
                http.clone(),
                base.clone(),
                stop.clone(),
                acknowledged.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let digest =
                        sha256_digest(format!("round {round} client {client} #{i}").as_bytes());
                    i += 1;
                    let response = http
                        .post(format!("{base}/v1/sign"))
                        .bearer_auth(&session)
                        .json(&json!({"key": "model-signing", "digest": digest}))
                        .send()
                        .await;
                    let Ok(response) = response else { break };
                    if response.status().as_u16() != 200 {
                        continue;
                    }
                    // A body cut off by the kill is not an acknowledgement.
                    let Ok(body) = response.json::<Value>().await else {
                        break;
                    };
                    let signed = &body["signatures"][0];
                    acknowledged.lock().expect("lock").push(Acknowledged {
                        index: signed["log_index"].as_u64().expect("log_index"),
                        digest: signed["digest"].as_str().expect("digest").to_string(),
                        signature: signed["signature"].as_str().expect("signature").to_string(),
                    });
                }
            }));
        }
        let watcher = {
            let (http, base, stop, checkpoints, log_key) = (
                http.clone(),
                base.clone(),
                stop.clone(),
                checkpoints.clone(),
                log_key.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(response) = http.get(format!("{base}/v1/log/checkpoint")).send().await
                        && let Ok(note) = response.text().await
                    {
                        let checkpoint =
                            verify_checkpoint(&note, &log_key).expect("signed checkpoint");
                        checkpoints
                            .lock()
                            .expect("lock")
                            .push((checkpoint.size, checkpoint.root));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        // Kill at a different point of the load each round.
        tokio::time::sleep(Duration::from_millis(400 + 170 * round as u64)).await;
        running.kill9();
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            task.await.expect("client");
        }
        watcher.await.expect("watcher");
        let restarted = Daemon::start_with_config_file(&hsm, config_path.clone())
            .await
            .unwrap_or_else(|e| panic!("restart after kill {round}: {e}"));
        daemon = Some(restarted);
    }

    let daemon = daemon.expect("daemon");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > 100,
        "only {} signatures under load",
        acknowledged.len()
    );
    let highest = acknowledged.iter().map(|a| a.index).max().expect("some");
    // Wait for a checkpoint covering everything acknowledged.
    let latest = loop {
        let note = http
            .get(daemon.url("/v1/log/checkpoint"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        let checkpoint = verify_checkpoint(&note, &log_key).expect("signed");
        if checkpoint.size > highest {
            break checkpoint;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    for ack in &acknowledged {
        let entry: Value = http
            .get(daemon.url(&format!("/v1/log/entries/{}", ack.index)))
            .send()
            .await
            .expect("entry")
            .json()
            .await
            .expect("json");
        assert_eq!(entry["entry"]["kind"], "signature", "entry {}", ack.index);
        assert_eq!(
            entry["entry"]["digest"],
            json!(ack.digest),
            "entry {}",
            ack.index
        );
        assert_eq!(
            entry["entry"]["signature"],
            json!(ack.signature),
            "entry {}",
            ack.index
        );
    }

    let mut seen = checkpoints.lock().expect("lock").clone();
    seen.sort();
    seen.dedup();
    assert!(seen.len() >= KILLS, "checkpoints seen: {}", seen.len());
    for (size, root) in seen.iter().filter(|(size, _)| *size > 0) {
        let proof: Value = http
            .get(daemon.url(&format!(
                "/v1/log/proof/consistency?from={size}&to={}",
                latest.size
            )))
            .send()
            .await
            .expect("proof")
            .json()
            .await
            .expect("json");
        let hashes: Vec<Hash> = proof["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| {
                STANDARD
                    .decode(h.as_str().expect("str"))
                    .expect("b64")
                    .try_into()
                    .expect("32")
            })
            .collect();
        verify_consistency(*size, latest.size, root, &latest.root, &hashes).unwrap_or_else(|e| {
            panic!(
                "checkpoint {size} is not consistent with {}: {e}",
                latest.size
            )
        });
    }

    let (code, stdout, stderr) = signet_log(&[
        "verify",
        "--server",
        &daemon.base_url,
        "--full",
        "--log-key",
        &log_key.to_vkey(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    eprintln!(
        "crash test: {} acknowledged signatures over {KILLS} kills, final log size {}",
        acknowledged.len(),
        latest.size
    );
}
