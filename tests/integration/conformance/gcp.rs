//! The suite against the tests' own Cloud KMS (real REST shapes, real keys), reached with
//! Application Default Credentials through its fake metadata server.
use crate::conformance::{self, TIMEOUT, UnderTest};
use crate::harness::gcp_fake::{Corruption, GcpFake};

pub const KEY_RING: &str = "projects/signet-test/locations/global/keyRings/conformance";

struct Gcp {
    fake: GcpFake,
    home: tempfile::TempDir,
}

impl Gcp {
    async fn start() -> Gcp {
        Gcp {
            fake: GcpFake::start().await,
            home: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl UnderTest for Gcp {
    fn algorithms(&self) -> &'static [&'static str] {
        &["ES256", "ES384", "PS256", "RS256"]
    }

    fn backend_toml(&self) -> String {
        format!(
            "\n[backends.under_test]\ntype = \"gcp_kms\"\nkey_ring = \"{KEY_RING}\"\nendpoint = \"{}\"\ntimeout = \"{}s\"\nmax_retries = 2\n",
            self.fake.url,
            TIMEOUT.as_secs()
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        // ADC: no credentials file, no gcloud config in HOME, so the metadata server is asked.
        vec![
            (
                "GCE_METADATA_HOST".into(),
                format!("127.0.0.1:{}", self.fake.port),
            ),
            ("HOME".into(), self.home.path().display().to_string()),
        ]
    }

    async fn stop(&mut self) {
        self.fake.stop();
    }

    async fn restart(&mut self) {
        self.fake.restart().await;
    }

    fn set_corrupt(&mut self, on: bool) {
        self.fake.set_corruption(if on {
            Corruption::Signatures
        } else {
            Corruption::None
        });
    }
}

conformance::suite!(Gcp::start().await; log_key_in_backend, keys_and_signatures, outage_and_recovery, corrupted_answers_never_sign, rotation);

/// A public key whose `pemCrc32c` does not match is never trusted: the daemon refuses to start
/// rather than publish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_public_key_with_a_bad_crc_is_refused() {
    let backend = Gcp::start().await;
    backend.fake.set_corruption(Corruption::PublicKeys);
    let hsm = crate::harness::SoftHsm::new();
    let issuer = crate::harness::TestIssuer::start().await;
    let mut config = crate::harness::DaemonConfig::new(&hsm, &issuer.url);
    config.policy_keys.clear();
    config.add_key_on(
        &conformance::key_name("ES256"),
        "ES256",
        conformance::BACKEND,
    );
    config.extra.push_str(&backend.backend_toml());
    config.env = backend.env();
    let path = hsm.dir.path().join("signet.toml");
    std::fs::write(&path, config.render()).expect("config");
    std::fs::write(
        path.with_extension("env.json"),
        serde_json::to_string(
            &config
                .env
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .expect("env"),
    )
    .expect("env");
    let stderr = crate::harness::Daemon::start_with_config_file(&hsm, path)
        .await
        .err()
        .expect("the daemon must not start on a corrupted public key");
    assert!(stderr.contains("pemCrc32c mismatch"), "{stderr}");
}

/// SIGTERM lets a request already at the backend finish: the fake holds the sign call, so the
/// signal is sent while the request is known to be in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let backend = Gcp::start().await;
    let h = conformance::daemon_for(&backend).await;
    let session = h.session().await;
    backend.fake.hold_signs();
    let in_flight = {
        let http = h.http.clone();
        let url = h.daemon.url("/v1/sign");
        let body = serde_json::json!({
            "key": conformance::key_name("ES256"),
            "digest": crate::harness::sha256_digest(b"in flight"),
        });
        tokio::spawn(async move { http.post(url).bearer_auth(session).json(&body).send().await })
    };
    backend.fake.sign_held().await;
    h.daemon.terminate();
    backend.fake.release_signs();
    let response = in_flight
        .await
        .expect("task")
        .expect("response despite SIGTERM");
    assert_eq!(response.status().as_u16(), 200);
    let crate::harness::Harness { daemon, .. } = h;
    assert!(daemon.stop().await.success(), "clean exit");
}
