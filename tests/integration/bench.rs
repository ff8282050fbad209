//! Smoke runs of `signet bench` (a second of tiny load against each target), so the benchmark
//! cannot rot. They check that it runs and reports, never how fast anything is.
use serde_json::Value;

use crate::harness::softhsm::{self, SoftHsm};
use crate::harness::{Harness, softhsm::PIN};
use crate::workflow::signet;

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("a JSON report: {stdout}"))
}

fn assert_ran(report: &Value, concurrency: u64) {
    assert_eq!(report["concurrency"], concurrency);
    assert!(
        report["requests"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    for field in ["p50_us", "p90_us", "p99_us", "max_us"] {
        assert!(report[field].as_u64().is_some(), "{field}: {report}");
    }
    assert!(report["p50_us"].as_u64() <= report["max_us"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_signet_and_a_batch() {
    let h = Harness::start_with(|c| c.max_signatures = 100_000).await;
    let token = h.hsm.dir.path().join("token");
    std::fs::write(&token, h.issuer.mint_default()).expect("token");
    let token = token.display().to_string();
    for batch in ["1", "10"] {
        let (code, stdout, stderr) = signet(
            &[
                "bench",
                "signet",
                "--server",
                &h.daemon.base_url,
                "--token-file",
                &token,
                "--sessions",
                "2",
                "--batch",
                batch,
                "-c",
                "2",
                "-d",
                "1s",
                "--json",
            ],
            &[],
        );
        assert_eq!(code, 0, "{stderr}");
        let report = report(&stdout);
        assert_ran(&report, 2);
        let ops = report["operations_per_second"].as_f64().expect("ops");
        let rps = report["requests_per_second"].as_f64().expect("rps");
        let batch: f64 = batch.parse().expect("batch");
        assert!((ops - rps * batch).abs() < 1e-6 * ops.max(1.0), "{report}");
    }
    // The HTTP floor against the same daemon, as scripts/bench.sh runs it.
    let healthz = format!("{}/healthz", h.daemon.base_url);
    let (code, stdout, stderr) = signet(
        &[
            "bench", "http", "--url", &healthz, "-c", "1", "-d", "1s", "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_ran(&report(&stdout), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_raw_pkcs11() {
    let hsm = SoftHsm::new();
    hsm.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "bench-es256",
        "--id",
        "01",
    ]);
    let conf = hsm.conf.display().to_string();
    let (code, stdout, stderr) = signet(
        &[
            "bench",
            "pkcs11",
            "--module",
            softhsm::MODULE,
            "--token-label",
            softhsm::LABEL,
            "--pin-env",
            "BENCH_PIN",
            "--key-label",
            "bench-es256",
            "-c",
            "2",
            "-d",
            "500ms",
            "--json",
        ],
        &[("SOFTHSM2_CONF", &conf), ("BENCH_PIN", PIN)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_ran(&report(&stdout), 2);
}

#[cfg(feature = "vault")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_vault_transit() {
    let bao = crate::harness::openbao::OpenBao::start().await;
    let created = reqwest::Client::new()
        .post(format!("{}/v1/transit/keys/bench", bao.url))
        .header("X-Vault-Token", &bao.root_token)
        .json(&serde_json::json!({"type": "ecdsa-p256"}))
        .send()
        .await
        .expect("create key");
    assert!(created.status().is_success());
    let (code, stdout, stderr) = signet(
        &[
            "bench",
            "vault",
            "--address",
            &bao.url,
            "--token-env",
            "BENCH_VAULT_TOKEN",
            "--key",
            "bench",
            "-c",
            "2",
            "-d",
            "1s",
            "--json",
        ],
        &[("BENCH_VAULT_TOKEN", &bao.root_token)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_ran(&report(&stdout), 2);
}
