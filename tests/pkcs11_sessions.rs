//! The PKCS#11 backend re-logs in when the token drops its login: a second PKCS#11 context in
//! this process logs the token out under the backend's pooled sessions. A test binary of its own,
//! because SoftHSM's config comes from this process's environment.
// Shared with the integration tests, which use more of it than this binary does.
#[allow(dead_code)]
#[path = "integration/harness/softhsm.rs"]
mod softhsm;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use sha2::Digest;
use signet::algorithm::Algorithm;
use signet::backend::pkcs11::Pkcs11Backend;
use signet::backend::{KeySpec, SigningBackend};
use signet::config::backend::Pkcs11Config;

#[tokio::test]
async fn signing_recovers_after_the_token_logs_out() {
    let hsm = softhsm::SoftHsm::new();
    // SAFETY: the only test in this binary, and it sets the variable before any PKCS#11 call.
    #[allow(unsafe_code)]
    let () = unsafe { std::env::set_var("SOFTHSM2_CONF", &hsm.conf) };
    let pin_file = hsm.dir.path().join("pin");
    std::fs::write(&pin_file, softhsm::PIN).expect("pin file");
    let config: Pkcs11Config = toml::from_str(&format!(
        "module = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\npool_size = 2\n",
        softhsm::MODULE,
        softhsm::LABEL,
        pin_file.display()
    ))
    .expect("config");
    let backend = Pkcs11Backend::connect("hsm", &config)
        .await
        .expect("connect");
    let spec = KeySpec {
        key_name: "k".into(),
        backend_key: "k".into(),
        algorithm: Algorithm::ES256,
        rsa_bits: 2048,
    };
    let key = backend.find_or_create(&spec).await.expect("key");
    assert!(key.created);
    let verifying =
        p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key_spki).expect("spki");
    let digest = sha2::Sha256::digest(b"before").to_vec();
    let signatures = backend
        .sign(&key.reference, Algorithm::ES256, vec![digest.clone()])
        .await
        .expect("sign");
    let signature = p256::ecdsa::Signature::from_der(&signatures[0]).expect("DER");
    verifying
        .verify_prehash(&digest, &signature)
        .expect("verifies");

    // Log the whole token out from another context of the same module in this process.
    let other = Pkcs11::new(softhsm::MODULE).expect("module");
    let _ = other.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = other
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            other
                .get_token_info(*s)
                .map(|i| i.label().trim_end() == softhsm::LABEL)
                .unwrap_or(false)
        })
        .expect("token");
    let session = other.open_rw_session(slot).expect("session");
    session.logout().expect("logout");

    let digest = sha2::Sha256::digest(b"after").to_vec();
    let signatures = backend
        .sign(&key.reference, Algorithm::ES256, vec![digest.clone()])
        .await
        .expect("signs again after logging in anew");
    let signature = p256::ecdsa::Signature::from_der(&signatures[0]).expect("DER");
    verifying
        .verify_prehash(&digest, &signature)
        .expect("verifies");
    backend.health().await.expect("healthy");
    drop(session);
    std::mem::forget(other);
}
