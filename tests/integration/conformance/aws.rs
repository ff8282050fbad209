//! The suite against a real LocalStack KMS, behind a proxy: LocalStack keeps its keys in
//! memory only, so an outage is the proxy refusing connections (as a network partition does).
use crate::conformance::{self, TIMEOUT, UnderTest};
use crate::harness::localstack::LocalStack;
use crate::harness::proxy::Proxy;

struct Aws {
    localstack: LocalStack,
    proxy: Proxy,
}

impl Aws {
    async fn start() -> Aws {
        let localstack = LocalStack::start().await;
        let proxy = Proxy::start(&localstack.url).await;
        Aws { localstack, proxy }
    }
}

impl UnderTest for Aws {
    fn algorithms(&self) -> &'static [&'static str] {
        &["ES256", "ES384", "PS256", "RS256"]
    }

    fn backend_toml(&self) -> String {
        format!(
            "\n[backends.under_test]\ntype = \"aws_kms\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\ntimeout = \"{}s\"\nmax_retries = 2\n",
            self.proxy.url,
            TIMEOUT.as_secs()
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        // The standard chain's first source: the environment.
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    async fn stop(&mut self) {
        self.proxy.stop();
    }

    async fn restart(&mut self) {
        self.proxy.restart().await;
    }

    fn set_corrupt(&mut self, on: bool) {
        self.proxy.set_corrupt(on);
    }
}

conformance::suite!(Aws::start().await; keys_and_signatures, outage_and_recovery, corrupted_answers_never_sign, rotation);

/// A backend that accepts connections and never answers gives 503 within the timeout too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_hung_backend_times_out() {
    let backend = Aws::start().await;
    let h = conformance::daemon_for(&backend).await;
    let session = h.session().await;
    conformance::sign_and_verify(&h, &session, "ES256").await;
    backend.proxy.set_hang(true);
    let started = std::time::Instant::now();
    let response = conformance::sign(&h, &session, "ES256", 1).await;
    let elapsed = started.elapsed();
    let (status, code) = crate::harness::problem(response).await;
    assert_eq!((status, code.as_str()), (503, "backend_unavailable"));
    assert!(
        elapsed < TIMEOUT + std::time::Duration::from_secs(1),
        "503 within the backend timeout ({TIMEOUT:?}), took {elapsed:?}"
    );
    backend.proxy.set_hang(false);
    conformance::sign_and_verify(&h, &session, "ES256").await;
}

/// One call of KMS's JSON protocol straight to LocalStack (a test's own admin action).
async fn kms(localstack: &LocalStack, action: &str, body: serde_json::Value) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(&localstack.url)
        .header("X-Amz-Target", format!("TrentService.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .json(&body)
        .send()
        .await
        .expect("KMS call");
    assert!(
        answer.status().is_success(),
        "{action}: {}",
        answer.status()
    );
    answer.json().await.unwrap_or(serde_json::Value::Null)
}

/// A disabled key gives a clear 503 at once (not a hang), and works again once enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_disabled_key_is_a_clear_error() {
    let backend = Aws::start().await;
    let h = conformance::daemon_for(&backend).await;
    let session = h.session().await;
    conformance::sign_and_verify(&h, &session, "ES256").await;
    let described = kms(
        &backend.localstack,
        "DescribeKey",
        serde_json::json!({"KeyId": "alias/conformance-es256"}),
    )
    .await;
    let key_id = described["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("KeyId")
        .to_string();
    kms(
        &backend.localstack,
        "DisableKey",
        serde_json::json!({"KeyId": key_id}),
    )
    .await;
    let started = std::time::Instant::now();
    let (status, code) =
        crate::harness::problem(conformance::sign(&h, &session, "ES256", 1).await).await;
    assert_eq!((status, code.as_str()), (503, "backend_unavailable"));
    assert!(started.elapsed() < TIMEOUT, "no retries of a disabled key");
    assert!(
        h.daemon.logs().contains("DisabledException"),
        "{}",
        h.daemon.logs()
    );
    kms(
        &backend.localstack,
        "EnableKey",
        serde_json::json!({"KeyId": key_id}),
    )
    .await;
    conformance::sign_and_verify(&h, &session, "ES256").await;
}
