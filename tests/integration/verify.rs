//! Independent signature checks: the public key is rebuilt from the JWKS JSON with the RustCrypto
//! crates (not signet's jwks code), or handed to OpenSSL as PEM.
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::EncodePublicKey;
use serde_json::Value;

fn member(jwk: &Value, name: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(
            jwk[name]
                .as_str()
                .unwrap_or_else(|| panic!("JWK lacks {name}: {jwk}")),
        )
        .expect("base64url member")
}

/// The JWK with this kid in a JWKS document.
pub fn find_jwk<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS {jwks}"))
}

/// Verifies one entry of a sign response against the JWKS; panics with the reason if it fails.
pub fn verify_signature(jwks: &Value, signed: &Value) {
    let jwk = find_jwk(jwks, signed["key_id"].as_str().expect("key_id"));
    assert_eq!(
        jwk["alg"], signed["algorithm"],
        "JWK alg matches the response"
    );
    let digest_text = signed["digest"].as_str().expect("digest");
    let digest = hex::decode(digest_text.split_once(':').expect("prefix").1).expect("hex");
    let signature = STANDARD
        .decode(signed["signature"].as_str().expect("signature"))
        .expect("base64");
    assert!(
        check(jwk, &digest, &signature),
        "signature does not verify under {jwk}"
    );
}

/// Whether `signature` over `digest` verifies under `jwk`.
pub fn check(jwk: &Value, digest: &[u8], signature: &[u8]) -> bool {
    match jwk["alg"].as_str().expect("alg") {
        "ES256" => {
            let point = [vec![4u8], member(jwk, "x"), member(jwk, "y")].concat();
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).expect("P-256 key");
            let Ok(sig) = p256::ecdsa::Signature::from_der(signature) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
        "ES384" => {
            let point = [vec![4u8], member(jwk, "x"), member(jwk, "y")].concat();
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).expect("P-384 key");
            let Ok(sig) = p384::ecdsa::Signature::from_der(signature) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
        alg @ ("PS256" | "RS256") => {
            let n = rsa::BigUint::from_bytes_be(&member(jwk, "n"));
            let e = rsa::BigUint::from_bytes_be(&member(jwk, "e"));
            let key = rsa::RsaPublicKey::new(n, e).expect("RSA key");
            if alg == "PS256" {
                key.verify(rsa::Pss::new::<sha2::Sha256>(), digest, signature)
                    .is_ok()
            } else {
                key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
                    .is_ok()
            }
        }
        other => panic!("unexpected alg {other}"),
    }
}

/// The PEM of an EC or RSA JWK, built with the RustCrypto crates.
pub fn jwk_to_pem(jwk: &Value) -> String {
    match jwk["kty"].as_str().expect("kty") {
        "EC" if jwk["crv"] == "P-256" => {
            let point = [vec![4u8], member(jwk, "x"), member(jwk, "y")].concat();
            p256::PublicKey::from_sec1_bytes(&point)
                .expect("P-256")
                .to_public_key_pem(Default::default())
                .expect("pem")
        }
        "EC" => {
            let point = [vec![4u8], member(jwk, "x"), member(jwk, "y")].concat();
            p384::PublicKey::from_sec1_bytes(&point)
                .expect("P-384")
                .to_public_key_pem(Default::default())
                .expect("pem")
        }
        _ => {
            let n = rsa::BigUint::from_bytes_be(&member(jwk, "n"));
            let e = rsa::BigUint::from_bytes_be(&member(jwk, "e"));
            rsa::pkcs8::EncodePublicKey::to_public_key_pem(
                &rsa::RsaPublicKey::new(n, e).expect("rsa"),
                Default::default(),
            )
            .expect("pem")
        }
    }
}

/// Runs `openssl dgst -<hash> -verify pub.pem -signature sig file` (plus PSS options for PS256)
/// and returns whether OpenSSL said "Verified OK".
pub fn openssl_verify(jwk: &Value, file: &std::path::Path, signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("pub.pem");
    let sig = dir.path().join("sig.bin");
    std::fs::write(&pem, jwk_to_pem(jwk)).expect("pem");
    std::fs::write(&sig, signature).expect("sig");
    let hash = if jwk["alg"] == "ES384" {
        "-sha384"
    } else {
        "-sha256"
    };
    let mut command = std::process::Command::new("openssl");
    command
        .args(["dgst", hash, "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&sig);
    if jwk["alg"] == "PS256" {
        command.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ]);
    }
    let output = command.arg(file).output().expect("openssl runs");
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains("Verified OK")
}
