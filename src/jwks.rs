//! Public keys as JWKs (RFC 7517) with RFC 7638 thumbprints as `kid`, and the JWKS document.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::algorithm::Algorithm;

/// A public JWK as signet publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `EC` or `RSA`.
    pub kty: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// JOSE algorithm.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// EC x coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
    /// RSA modulus, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
}

/// A JWK Set document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Why a public key could not be turned into a JWK, or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The DER is not a SubjectPublicKeyInfo of the algorithm's key type.
    #[error("public key is not a valid {0} key")]
    InvalidKey(Algorithm),
    /// A JWK lacks a member or has a bad one.
    #[error("JWK is malformed: {0}")]
    Malformed(&'static str),
    /// The JWK's `kid` is not the thumbprint of its key.
    #[error("JWK kid does not match its key's RFC 7638 thumbprint")]
    KidMismatch,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410), before its 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER SubjectPublicKeyInfo of a raw Ed25519 public key.
pub fn ed25519_spki(raw: &[u8; 32]) -> Vec<u8> {
    [&ED25519_SPKI_PREFIX[..], raw].concat()
}

/// The raw 32-byte key of an Ed25519 SubjectPublicKeyInfo, if `spki` is one.
pub fn ed25519_raw(spki: &[u8]) -> Option<[u8; 32]> {
    spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?.try_into().ok()
}

/// Builds the JWK (with its thumbprint `kid`) of an SPKI DER public key for `algorithm`.
pub fn jwk_from_spki(spki: &[u8], algorithm: Algorithm) -> Result<Jwk, JwkError> {
    let invalid = || JwkError::InvalidKey(algorithm);
    let mut jwk = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (crv, point) = if algorithm == Algorithm::ES256 {
                let key = p256::PublicKey::from_public_key_der(spki).map_err(|_| invalid())?;
                (
                    "P-256",
                    p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false)
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                let key = p384::PublicKey::from_public_key_der(spki).map_err(|_| invalid())?;
                (
                    "P-384",
                    p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false)
                        .as_bytes()
                        .to_vec(),
                )
            };
            let coordinate_len = (point.len() - 1) / 2;
            Jwk {
                kty: "EC".into(),
                kid: String::new(),
                alg: algorithm.as_str().into(),
                use_: "sig".into(),
                crv: Some(crv.into()),
                x: Some(b64(&point[1..1 + coordinate_len])),
                y: Some(b64(&point[1 + coordinate_len..])),
                n: None,
                e: None,
            }
        }
        Algorithm::PS256 | Algorithm::RS256 => {
            let key = rsa::RsaPublicKey::from_public_key_der(spki).map_err(|_| invalid())?;
            Jwk {
                kty: "RSA".into(),
                kid: String::new(),
                alg: algorithm.as_str().into(),
                use_: "sig".into(),
                crv: None,
                x: None,
                y: None,
                n: Some(b64(&key.n().to_bytes_be())),
                e: Some(b64(&key.e().to_bytes_be())),
            }
        }
        // RFC 8037: an Ed25519 key is an OKP JWK (the log key's `kid`; it is never published).
        Algorithm::EdDSA => {
            let raw = ed25519_raw(spki).ok_or_else(invalid)?;
            Jwk {
                kty: "OKP".into(),
                kid: String::new(),
                alg: algorithm.as_str().into(),
                use_: "sig".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64(&raw)),
                y: None,
                n: None,
                e: None,
            }
        }
    };
    jwk.kid = thumbprint(&jwk)?;
    Ok(jwk)
}

/// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no spaces.
pub fn thumbprint(jwk: &Jwk) -> Result<String, JwkError> {
    // Members are base64url or fixed names, so no JSON escaping is needed; serde_json quotes anyway.
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let canonical = match jwk.kty.as_str() {
        "EC" => {
            let (Some(crv), Some(x), Some(y)) = (&jwk.crv, &jwk.x, &jwk.y) else {
                return Err(JwkError::Malformed("EC key needs crv, x and y"));
            };
            format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                quote(crv),
                quote(x),
                quote(y)
            )
        }
        "RSA" => {
            let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                return Err(JwkError::Malformed("RSA key needs n and e"));
            };
            format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, quote(e), quote(n))
        }
        "OKP" => {
            let (Some(crv), Some(x)) = (&jwk.crv, &jwk.x) else {
                return Err(JwkError::Malformed("OKP key needs crv and x"));
            };
            format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, quote(crv), quote(x))
        }
        _ => return Err(JwkError::Malformed("kty must be EC, RSA or OKP")),
    };
    Ok(b64(&Sha256::digest(canonical.as_bytes())))
}

/// The SPKI DER of a JWK, after checking that its `kid` is its thumbprint.
pub fn spki_from_jwk(jwk: &Jwk) -> Result<(Algorithm, Vec<u8>), JwkError> {
    use p256::pkcs8::EncodePublicKey;
    if thumbprint(jwk)? != jwk.kid {
        return Err(JwkError::KidMismatch);
    }
    let algorithm: Algorithm = jwk
        .alg
        .parse()
        .map_err(|_| JwkError::Malformed("unknown alg"))?;
    let decode = |v: &Option<String>, what: &'static str| {
        v.as_deref()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or(JwkError::Malformed(what))
    };
    let invalid = || JwkError::InvalidKey(algorithm);
    let der = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            let point = [vec![0x04], decode(&jwk.x, "x")?, decode(&jwk.y, "y")?].concat();
            if algorithm == Algorithm::ES256 {
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| invalid())?
                    .to_public_key_der()
            } else {
                p384::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| invalid())?
                    .to_public_key_der()
            }
            .map_err(|_| invalid())?
        }
        Algorithm::PS256 | Algorithm::RS256 => {
            let n = rsa::BigUint::from_bytes_be(&decode(&jwk.n, "n")?);
            let e = rsa::BigUint::from_bytes_be(&decode(&jwk.e, "e")?);
            rsa::RsaPublicKey::new(n, e)
                .map_err(|_| invalid())?
                .to_public_key_der()
                .map_err(|_| invalid())?
        }
        Algorithm::EdDSA => {
            let raw: [u8; 32] = decode(&jwk.x, "x")?.try_into().map_err(|_| invalid())?;
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(invalid());
            }
            return Ok((algorithm, ed25519_spki(&raw)));
        }
    };
    Ok((algorithm, der.as_bytes().to_vec()))
}

/// PEM ("PUBLIC KEY") of an SPKI DER key, for OpenSSL and other verifiers.
pub fn spki_to_pem(spki: &[u8]) -> String {
    // Encoding into a String cannot fail but for lengths far past any key's.
    pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, spki).unwrap_or_default()
}

/// The DER inside a PEM `PUBLIC KEY` block (as Vault and Cloud KMS return public keys).
pub fn pem_to_spki(pem: &str) -> Option<Vec<u8>> {
    match pem_rfc7468::decode_vec(pem.trim().as_bytes()) {
        Ok(("PUBLIC KEY", der)) => Some(der),
        _ => None,
    }
}

/// A serialized JWKS with its strong `ETag`, computed once per key change.
#[derive(Debug, Clone)]
pub struct PublishedJwks {
    /// The JSON body.
    pub body: std::sync::Arc<[u8]>,
    /// Quoted entity tag.
    pub etag: String,
}

impl PublishedJwks {
    /// Serializes `keys` and computes the ETag.
    pub fn new(keys: Vec<Jwk>) -> Self {
        let body =
            serde_json::to_vec(&JwkSet { keys }).unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
        PublishedJwks {
            body: body.into(),
            etag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: String::new(),
            alg: "RS256".into(),
            use_: "sig".into(),
            crv: None,
            x: None,
            y: None,
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
        };
        assert_eq!(
            thumbprint(&jwk).expect("valid"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn ec_jwk_round_trips_through_spki() {
        use p256::pkcs8::EncodePublicKey;
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let spki = secret.public_key().to_public_key_der().expect("der");
        let jwk = jwk_from_spki(spki.as_bytes(), Algorithm::ES256).expect("jwk");
        assert_eq!(jwk.crv.as_deref(), Some("P-256"));
        let (alg, back) = spki_from_jwk(&jwk).expect("spki");
        assert_eq!(alg, Algorithm::ES256);
        assert_eq!(back, spki.as_bytes());
        let mut tampered = jwk.clone();
        tampered.kid = "x".into();
        assert_eq!(spki_from_jwk(&tampered), Err(JwkError::KidMismatch));
    }

    #[test]
    fn pem_round_trips_and_matches_what_openssl_style_tools_write() {
        use p256::pkcs8::EncodePublicKey;
        let key = p256::SecretKey::from_slice(&[9; 32])
            .expect("key")
            .public_key();
        let spki = key.to_public_key_der().expect("spki");
        let pem = spki_to_pem(spki.as_bytes());
        // model_signing hashes this text for its key hint: 64-column lines, a final newline.
        let reference = key
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("pem");
        assert_eq!(pem, reference);
        assert_eq!(pem_to_spki(&pem).as_deref(), Some(spki.as_bytes()));
        let other_label = pem.replace("PUBLIC KEY", "PRIVATE KEY");
        assert_eq!(pem_to_spki(&other_label), None);
        assert_eq!(pem_to_spki("not pem"), None);
    }
}
