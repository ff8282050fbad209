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
        let bao = OpenBao::start().await;
        bao.policy("signet", SIGNET_POLICY).await;
        let token = bao.token(&["signet"], "1h").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_keys_and_signatures() {
    conformance::keys_and_signatures(Vault::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_outage_and_recovery() {
    conformance::outage_and_recovery(Vault::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_corrupted_answers_never_sign() {
    conformance::corrupted_answers_never_sign(Vault::start().await).await;
}
