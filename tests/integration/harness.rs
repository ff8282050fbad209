//! Test parts: a SoftHSM token, an OIDC issuer, the daemon. Each test starts its own, so tests run
//! in parallel without sharing state. A missing part (softhsm2 not installed) fails the test.
pub mod daemon;
#[cfg(feature = "gcp")]
pub mod gcp_fake;
pub mod issuer;
#[cfg(feature = "aws")]
pub mod localstack;
#[cfg(feature = "vault")]
pub mod openbao;
#[cfg(any(feature = "vault", feature = "aws"))]
pub mod proxy;
#[cfg(any(feature = "vault", feature = "aws", feature = "gcp"))]
pub mod server;
pub mod softhsm;

pub use daemon::{Daemon, DaemonConfig};
pub use issuer::TestIssuer;
pub use softhsm::SoftHsm;

use serde_json::Value;

/// A problem+json error's status and code.
pub async fn problem(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "body: {body}"
    );
    (status, body["code"].as_str().expect("code").to_string())
}

/// Everything one test needs: a token, an issuer and a daemon using both.
pub struct Harness {
    pub hsm: SoftHsm,
    pub issuer: TestIssuer,
    pub daemon: Daemon,
    pub http: reqwest::Client,
}

impl Harness {
    /// The default setup: ES256 `model-signing`, a `release` policy for acme/models on main.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// The default setup, adjusted by `tweak` before the daemon starts.
    pub async fn start_with(tweak: impl FnOnce(&mut DaemonConfig)) -> Harness {
        let hsm = SoftHsm::new();
        let issuer = TestIssuer::start().await;
        let mut config = DaemonConfig::new(&hsm, &issuer.url);
        tweak(&mut config);
        let daemon = Daemon::start(&hsm, &config).await;
        Harness {
            hsm,
            issuer,
            daemon,
            http: reqwest::Client::new(),
        }
    }

    /// The default setup with the daemon built in this process on a manual clock, adjusted by
    /// `tweak`: tests of expiry, grace periods and schedules advance [`Harness::clock`].
    pub async fn in_process_with(tweak: impl FnOnce(&mut DaemonConfig)) -> Harness {
        let clock = signet::clock::ManualClock::starting_now();
        Harness::in_process_on(clock, tweak).await
    }

    /// As [`Harness::in_process_with`], on a clock set by the test.
    pub async fn in_process_on(
        clock: signet::clock::ManualClock,
        tweak: impl FnOnce(&mut DaemonConfig),
    ) -> Harness {
        let hsm = SoftHsm::in_process();
        let issuer = TestIssuer::start().await;
        let clock = std::sync::Arc::new(clock);
        issuer.follow_clock(clock.clone());
        let mut config = DaemonConfig::new(&hsm, &issuer.url);
        tweak(&mut config);
        let daemon = Daemon::start_in_process(&hsm, &config, clock).await;
        Harness {
            hsm,
            issuer,
            daemon,
            http: reqwest::Client::new(),
        }
    }

    /// The in-process daemon's clock.
    pub fn clock(&self) -> &signet::clock::ManualClock {
        self.daemon.clock()
    }

    /// Stops the daemon with SIGTERM (it must exit cleanly), runs `while_stopped` on the token
    /// folder (where the database is), and starts it again on the same config.
    pub async fn restart(self, while_stopped: impl FnOnce(&std::path::Path)) -> Harness {
        let Harness {
            hsm,
            issuer,
            daemon,
            http,
        } = self;
        if daemon.is_in_process() {
            let (config_path, clock) = daemon.stop_in_process().await;
            while_stopped(hsm.dir.path());
            let daemon = Daemon::start_in_process_on(config_path, clock).await;
            return Harness {
                hsm,
                issuer,
                daemon,
                http,
            };
        }
        let config_path = daemon.config_path.clone();
        assert!(daemon.stop().await.success(), "clean exit on SIGTERM");
        while_stopped(hsm.dir.path());
        let daemon = Daemon::start_with_config_file(&hsm, config_path)
            .await
            .unwrap_or_else(|stderr| panic!("restart failed:\n{stderr}"));
        Harness {
            hsm,
            issuer,
            daemon,
            http,
        }
    }

    /// GET a JSON document from the daemon.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.daemon.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON body")
    }

    /// GET /readyz: its status and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = self
            .http
            .get(self.daemon.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json().await.expect("readyz JSON"))
    }

    /// POST /v1/sessions with `id_token` and an optional body.
    pub async fn open_session(&self, id_token: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.daemon.url("/v1/sessions"))
            .bearer_auth(id_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("POST /v1/sessions")
    }

    /// A session token for a default, valid ID token.
    pub async fn session(&self) -> String {
        self.session_with(None).await
    }

    /// A session token, with a session request body.
    pub async fn session_with(&self, body: Option<Value>) -> String {
        let response = self.open_session(&self.issuer.mint_default(), body).await;
        assert_eq!(
            response.status().as_u16(),
            201,
            "{}",
            response.text().await.unwrap_or_default()
        );
        let body: Value = response.json().await.expect("JSON");
        body["session_token"]
            .as_str()
            .expect("session_token")
            .to_string()
    }

    /// POST /v1/sign with a session token and a JSON body.
    pub async fn sign(&self, session: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.daemon.url("/v1/sign"))
            .bearer_auth(session)
            .json(&body)
            .send()
            .await
            .expect("POST /v1/sign")
    }

    /// Signs `count` digests (of `label` and a number) with `model-signing`, which must
    /// succeed; returns the last signature's log index.
    pub async fn sign_batch(&self, session: &str, label: &str, count: u32) -> u64 {
        let digests: Vec<String> = (0..count)
            .map(|i| sha256_digest(format!("{label} {i}").as_bytes()))
            .collect();
        let response = self
            .sign(
                session,
                serde_json::json!({"key": "model-signing", "digests": digests}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.expect("JSON");
        body["signatures"]
            .as_array()
            .and_then(|s| s.last())
            .and_then(|s| s["log_index"].as_u64())
            .expect("log index")
    }

    /// The daemon's JWKS.
    pub async fn jwks(&self) -> Value {
        self.http
            .get(self.daemon.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("GET jwks")
            .json()
            .await
            .expect("JWKS JSON")
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The pinned venv's Python (scripts/test.sh makes it); its absence fails the test.
pub fn python() -> String {
    let python = std::env::var("SIGNET_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python").to_string()
    });
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: scripts/test.sh creates it from tests/independent/requirements.txt"
    );
    python
}
