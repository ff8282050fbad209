//! JWKS, key listing and health endpoints.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::Digest;

use crate::harness::Harness;

/// RFC 7638 thumbprint, computed here from the JWK members (independently of signet's code).
fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str().expect("kty") {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().expect("crv"),
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y")
        ),
        _ => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().expect("e"),
            jwk["n"].as_str().expect("n")
        ),
    };
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

#[tokio::test]
async fn jwks_publishes_every_key_with_thumbprint_kids() {
    let h = Harness::start_with(|c| c.add_key("rsa", "PS256")).await;
    let response = h
        .http
        .get(h.daemon.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("max-age")
    );
    let etag = headers["etag"].to_str().expect("ascii").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let jwks: Value = response.json().await.expect("json");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(
        keys.len(),
        2,
        "model-signing and rsa, never the log key: {jwks}"
    );
    for jwk in keys {
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"].as_str(), Some(thumbprint(jwk).as_str()));
        assert!(
            jwk.get("d").is_none() && jwk.get("p").is_none(),
            "no private members"
        );
    }
    assert!(
        keys.iter()
            .any(|k| k["alg"] == "PS256" && k["kty"] == "RSA")
    );

    let not_modified = h
        .http
        .get(h.daemon.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(not_modified.status().as_u16(), 304);
    let changed = h
        .http
        .get(h.daemon.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .expect("get");
    assert_eq!(changed.status().as_u16(), 200);
}

#[tokio::test]
async fn keys_lists_versions_and_states() {
    let h = Harness::start().await;
    let keys: Value = h.get_json("/v1/keys").await;
    let model = keys
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["name"] == "model-signing")
        .expect("model-signing listed");
    assert_eq!(model["algorithm"], "ES256");
    assert_eq!(model["backend"], "hsm");
    let version = &model["versions"][0];
    assert_eq!(version["version"], 1);
    assert_eq!(version["state"], "active");
    let jwks = h.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == version["key_id"])
    );
    time::OffsetDateTime::parse(
        version["created_at"].as_str().expect("created_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
}

#[tokio::test]
async fn health_and_readiness() {
    let h = Harness::start().await;
    let health: Value = h.get_json("/healthz").await;
    assert_eq!(health, serde_json::json!({"status": "ok"}));
    let ready = h
        .http
        .get(h.daemon.url("/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status().as_u16(), 200);
}

#[test]
fn keys_pem_takes_a_kid_that_starts_with_a_dash() {
    // RFC 7638 kids are base64url: one in 64 starts with `-`, which a CLI must not read as a flag
    // (the printed walk-through passes `--kid "$(cat kid.txt)"`).
    use p256::pkcs8::EncodePublicKey;
    let jwk = (0..10_000)
        .find_map(|_| {
            let secret = p256::SecretKey::random(&mut rand::thread_rng());
            let spki = secret.public_key().to_public_key_der().expect("spki");
            let jwk =
                signet::jwks::jwk_from_spki(spki.as_bytes(), signet::algorithm::Algorithm::ES256)
                    .expect("jwk");
            jwk.kid.starts_with('-').then_some((jwk, spki))
        })
        .expect("a key whose thumbprint starts with '-'");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk.0] }).to_string()).expect("write");
    let (code, stdout, stderr) = crate::workflow::signet(
        &[
            "keys",
            "pem",
            "--jwks",
            &jwks.display().to_string(),
            "--kid",
            &jwk.0.kid,
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let expected = jwk
        .1
        .to_pem("PUBLIC KEY", p256::pkcs8::LineEnding::LF)
        .expect("pem");
    assert_eq!(stdout.trim(), expected.trim());
}
