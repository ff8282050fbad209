//! The suite against SoftHSM. The token is a library inside the daemon: there is no server to
//! stop and no wire to corrupt, so only the key and signature checks apply (the token logging
//! out under the daemon is tests/pkcs11_sessions.rs).
use crate::conformance::{self, TIMEOUT, UnderTest};
use crate::harness::softhsm;

/// A second backend on the daemon's own test token (same module and label, its own keys).
struct Pkcs11;

impl UnderTest for Pkcs11 {
    fn algorithms(&self) -> &'static [&'static str] {
        &["ES256", "ES384", "PS256", "RS256"]
    }

    fn backend_toml(&self) -> String {
        format!(
            "\n[backends.under_test]\ntype = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_env = \"SIGNET_TEST_HSM_PIN\"\ntimeout = \"{}s\"\n",
            softhsm::MODULE,
            softhsm::LABEL,
            TIMEOUT.as_secs()
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    async fn stop(&mut self) {}

    async fn restart(&mut self) {}

    fn set_corrupt(&mut self, _on: bool) {}
}

conformance::suite!(Pkcs11; log_key_in_backend, keys_and_signatures, rotation);
