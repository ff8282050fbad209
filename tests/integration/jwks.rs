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
    assert_eq!(keys.len(), 3, "model-signing, log-signing and rsa: {jwks}");
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
