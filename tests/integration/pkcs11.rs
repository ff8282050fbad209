//! The PKCS#11 backend against SoftHSM: keys provisioned with `pkcs11-tool` are used as version 1,
//! keys that do not fit are refused at start-up, and a wrong PIN stops the daemon without
//! printing it.
use serde_json::json;

use crate::harness::{Daemon, DaemonConfig, SoftHsm, TestIssuer, sha256_digest};
use crate::verify::{jwk_to_pem, verify_signature};

#[tokio::test]
async fn a_key_provisioned_with_pkcs11_tool_is_used() {
    let hsm = SoftHsm::new();
    hsm.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "team-key",
        "--id",
        "0a01",
    ]);
    let public_der = hsm.pkcs11_tool(&["--read-object", "--type", "pubkey", "--label", "team-key"]);
    let issuer = TestIssuer::start().await;
    let mut config = DaemonConfig::new(&hsm, &issuer.url);
    config.keys[0].backend_key = Some("team-key".into());
    let daemon = Daemon::start(&hsm, &config).await;
    let http = reqwest::Client::new();
    let jwks: serde_json::Value = http
        .get(daemon.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    // The published key is the one the security team made: compare PEMs.
    let token_pem = {
        let dir = tempfile::tempdir().expect("tempdir");
        let der = dir.path().join("pub.der");
        std::fs::write(&der, &public_der).expect("write");
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&der)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("pem")
    };
    let published: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(jwk_to_pem)
        .collect();
    assert!(
        published.contains(&token_pem),
        "{token_pem} not in {published:?}"
    );

    let session = {
        let response = http
            .post(daemon.url("/v1/sessions"))
            .bearer_auth(issuer.mint_default())
            .send()
            .await
            .expect("post");
        let body: serde_json::Value = response.json().await.expect("json");
        body["session_token"].as_str().expect("token").to_string()
    };
    let response = http
        .post(daemon.url("/v1/sign"))
        .bearer_auth(&session)
        .json(&json!({"key": "model-signing", "digest": sha256_digest(b"team")}))
        .send()
        .await
        .expect("sign");
    let body: serde_json::Value = response.json().await.expect("json");
    verify_signature(&jwks, &body["signatures"][0]);
    // No second key pair was made for it.
    let listing =
        String::from_utf8(hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"])).expect("utf8");
    assert_eq!(listing.matches("team-key").count(), 1, "{listing}");
}

#[tokio::test]
async fn generated_keys_are_sensitive_and_not_extractable() {
    let hsm = SoftHsm::new();
    let issuer = TestIssuer::start().await;
    let config = DaemonConfig::new(&hsm, &issuer.url);
    let _daemon = Daemon::start(&hsm, &config).await;
    let listing =
        String::from_utf8(hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"])).expect("utf8");
    assert!(listing.contains("model-signing"), "{listing}");
    let section = listing
        .split("Private Key Object")
        .find(|s| s.contains("label:      model-signing"))
        .expect("model-signing private key");
    assert!(section.contains("sensitive"), "{section}");
    assert!(
        section.contains("never extractable") || !section.contains("extractable"),
        "{section}"
    );
    assert!(
        section.contains("sign") && !section.contains("decrypt") && !section.contains("derive"),
        "{section}"
    );
}

#[tokio::test]
async fn a_key_of_the_wrong_type_stops_start_up() {
    let hsm = SoftHsm::new();
    hsm.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:secp384r1",
        "--label",
        "p384-key",
        "--id",
        "0b01",
    ]);
    let issuer = TestIssuer::start().await;
    let mut config = DaemonConfig::new(&hsm, &issuer.url);
    config.keys[0].backend_key = Some("p384-key".into());
    let path = hsm.dir.path().join("wrong.toml");
    std::fs::write(&path, config.render()).expect("write");
    let stderr = Daemon::start_with_config_file(&hsm, path)
        .await
        .err()
        .expect("start-up must fail");
    assert!(
        stderr.contains("p384-key") && stderr.contains("another curve"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_wrong_pin_stops_start_up_without_printing_it() {
    let hsm = SoftHsm::new();
    let issuer = TestIssuer::start().await;
    let mut config = DaemonConfig::new(&hsm, &issuer.url);
    let pin_file = hsm.dir.path().join("wrong-pin");
    std::fs::write(&pin_file, "0000-wrong-pin-9999\n").expect("write");
    config.extra = String::new();
    let text = config.render().replace(
        "pin_env = \"SIGNET_TEST_HSM_PIN\"",
        &format!("pin_file = \"{}\"", pin_file.display()),
    );
    let path = hsm.dir.path().join("wrong-pin.toml");
    std::fs::write(&path, text).expect("write");
    let stderr = Daemon::start_with_config_file(&hsm, path)
        .await
        .err()
        .expect("start-up must fail");
    assert!(stderr.contains("PIN"), "{stderr}");
    assert!(
        !stderr.contains("0000-wrong-pin-9999"),
        "the PIN leaked: {stderr}"
    );
}

#[tokio::test]
async fn a_config_error_names_file_and_field_and_exits_2() {
    let hsm = SoftHsm::new();
    let issuer = TestIssuer::start().await;
    let config = DaemonConfig::new(&hsm, &issuer.url);
    let text = config
        .render()
        .replace("issuer = \"ci\"\nclaims", "issuer = \"nobody\"\nclaims")
        .replace("max_signatures = 100", "max_signatures = 0");
    let path = hsm.dir.path().join("broken.toml");
    std::fs::write(&path, &text).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("SIGNET_TEST_HSM_PIN", crate::harness::softhsm::PIN)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.toml"), "{stderr}");
    assert!(stderr.contains("policies[0].max_signatures"), "{stderr}");
    assert!(
        stderr.contains("policies[0].issuer"),
        "every problem is listed: {stderr}"
    );
}
