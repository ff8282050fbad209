//! The suite against a real OpenBao (Vault's API), behind a proxy that can corrupt answers.
use crate::conformance::{self, TIMEOUT, UnderTest};
use crate::harness::openbao::OpenBao;
use crate::harness::proxy::Proxy;

/// The least-privilege policy the README gives operators, used for signet's token.
pub const SIGNET_POLICY: &str = r#"
path "transit/keys/conformance-*" { capabilities = ["create", "read", "update"] }
path "transit/keys/conformance-*/rotate" { capabilities = ["update"] }
path "transit/sign/conformance-*" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
"#;

struct Vault {
    bao: OpenBao,
    proxy: Proxy,
    token: String,
}

impl Vault {
    async fn start() -> Vault {
        Vault::with_token("1h", true).await
    }

    /// OpenBao with signet's token valid for `ttl`, renewable or not.
    async fn with_token(ttl: &str, renewable: bool) -> Vault {
        let bao = OpenBao::start().await;
        bao.policy("signet", SIGNET_POLICY).await;
        let token = bao.token_with(&["signet"], ttl, renewable).await;
        let proxy = Proxy::start(&bao.url).await;
        Vault { bao, proxy, token }
    }
}

impl UnderTest for Vault {
    fn algorithms(&self) -> &'static [&'static str] {
        &["ES256", "ES384", "PS256", "RS256"]
    }

    fn backend_toml(&self) -> String {
        format!(
            "\n[backends.under_test]\ntype = \"vault_transit\"\naddress = \"{}\"\nmount = \"transit\"\ntoken_env = \"SIGNET_TEST_VAULT_TOKEN\"\ntimeout = \"{}s\"\nmax_retries = 2\n",
            self.proxy.url,
            TIMEOUT.as_secs()
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("SIGNET_TEST_VAULT_TOKEN".into(), self.token.clone())]
    }

    async fn stop(&mut self) {
        self.bao.stop();
    }

    async fn restart(&mut self) {
        self.bao.restart().await;
    }

    fn set_corrupt(&mut self, on: bool) {
        self.proxy.set_corrupt(on);
    }
}

conformance::suite!(Vault::start().await; log_key_in_backend, keys_and_signatures, outage_and_recovery, corrupted_answers_never_sign, rotation);

/// A renewable token is renewed by the daemon: signing still works long after its first TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_renewable_token_is_renewed() {
    let backend = Vault::with_token("4s", true).await;
    let h = conformance::daemon_for(&backend).await;
    let session = h.session().await;
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    conformance::sign_and_verify(&h, &session, "ES256").await;
}

/// An expired token gives 503 naming the backend and saying what to do, and /readyz shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_expired_token_is_a_clear_error() {
    let backend = Vault::with_token("3s", false).await;
    let h = conformance::daemon_for(&backend).await;
    let session = h.session().await;
    conformance::sign_and_verify(&h, &session, "ES256").await;
    // Vault expires the token on its own clock: sign until it does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let response = loop {
        let response = conformance::sign(&h, &session, "ES256", 1).await;
        if response.status().as_u16() != 200 {
            break response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "backend_unavailable");
    // The caller learns which backend; the operator's log says why, and /readyz (which anyone
    // may call) names the backend only.
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("under_test"), "{detail}");
    assert!(
        h.daemon
            .logs()
            .contains("Vault refused the token (expired, revoked or lacking a policy)"),
        "{}",
        h.daemon.logs()
    );
    let ready: serde_json::Value = h.get_json("/readyz").await;
    assert_eq!(ready["status"], "unavailable", "{ready}");
    assert_eq!(
        ready["failing"],
        serde_json::json!([{"component": "backend:under_test", "error": "unavailable"}])
    );
    assert!(
        h.daemon.logs().contains("readiness: a backend is failing"),
        "{}",
        h.daemon.logs()
    );
    assert!(!h.daemon.logs().contains(&backend.token));
}
