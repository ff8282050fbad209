//! PKCS#11 objects: key templates, lookups by label, public keys read back as SPKI, mechanisms,
//! and the conversions between PKCS#11's forms and the API's (r||s to DER, DigestInfo).
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p256::pkcs8::EncodePublicKey;

use crate::algorithm::Algorithm;
use crate::backend::KeySpec;

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of P-256 keys.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID (1.3.132.0.34).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// `CKA_EC_PARAMS` of Ed25519 keys: the RFC 8410 OID id-Ed25519 (1.3.101.112).
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1): `CKM_RSA_PKCS` signs DigestInfo.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

pub(super) fn find(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Vec<ObjectHandle>, CkError> {
    session.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

pub(super) fn mechanism(algorithm: Algorithm) -> Mechanism<'static> {
    match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => Mechanism::Ecdsa,
        Algorithm::PS256 => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }),
        Algorithm::RS256 => Mechanism::RsaPkcs,
        // Pure Ed25519 over the whole message (no parameters: the curve defines the scheme).
        Algorithm::EdDSA => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
    }
}

/// The bytes the mechanism signs for one digest.
pub(super) fn signing_input(algorithm: Algorithm, digest: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::RS256 => [SHA256_DIGEST_INFO, digest].concat(),
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::PS256 | Algorithm::EdDSA => {
            digest.to_vec()
        }
    }
}

/// Outcome of looking a key up, before it is turned into a `BackendKey`.
pub(super) enum Lookup {
    Found { public: ObjectHandle },
    Ambiguous(usize, usize),
    PublicMissing,
    Missing,
}

pub(super) fn lookup(session: &Session, label: &str) -> Result<Lookup, CkError> {
    let private = find(session, ObjectClass::PRIVATE_KEY, label)?;
    let public = find(session, ObjectClass::PUBLIC_KEY, label)?;
    Ok(match (private.as_slice(), public.as_slice()) {
        ([], []) => Lookup::Missing,
        ([_], [public]) => Lookup::Found { public: *public },
        ([_], []) => Lookup::PublicMissing,
        _ => Lookup::Ambiguous(private.len(), public.len()),
    })
}

pub(super) fn generate(
    session: &Session,
    spec: &KeySpec,
) -> Result<(ObjectHandle, ObjectHandle), CkError> {
    let label = spec.backend_key.as_bytes().to_vec();
    let mut id = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut id);
    let common_private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.to_vec()),
    ];
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Label(label),
        Attribute::Id(id.to_vec()),
    ];
    let mechanism = match spec.algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            let params = if spec.algorithm == Algorithm::ES256 {
                P256_PARAMS
            } else {
                P384_PARAMS
            };
            public.push(Attribute::EcParams(params.to_vec()));
            Mechanism::EccKeyPairGen
        }
        Algorithm::PS256 | Algorithm::RS256 => {
            public.push(Attribute::ModulusBits(u64::from(spec.rsa_bits).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
        Algorithm::EdDSA => {
            public.push(Attribute::EcParams(ED25519_PARAMS.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
    };
    let mut private = common_private;
    if spec.algorithm.is_rsa() {
        // SoftHSM rejects CKA_DERIVE on RSA private key templates.
        private.retain(|a| !matches!(a, Attribute::Derive(_)));
    }
    session.generate_key_pair(&mechanism, &public, &private)
}

/// The public key of `handle` as SPKI DER, checked against the configured algorithm.
pub(super) fn public_key_spki(
    session: &Session,
    handle: ObjectHandle,
    algorithm: Algorithm,
) -> Result<Result<Vec<u8>, String>, CkError> {
    let attributes = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::EcPoint,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ],
    )?;
    let mut key_type = None;
    let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            _ => {}
        }
    }
    Ok(match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            if key_type != Some(KeyType::EC) {
                return Ok(Err("not an EC key".to_string()));
            }
            let (expected_params, point_len) = if algorithm == Algorithm::ES256 {
                (P256_PARAMS, 65)
            } else {
                (P384_PARAMS, 97)
            };
            if params.as_deref() != Some(expected_params) {
                return Ok(Err("the key is on another curve".to_string()));
            }
            let Some(point) = point else {
                return Ok(Err("no CKA_EC_POINT".to_string()));
            };
            let point = unwrap_ec_point(&point, point_len);
            let der = if algorithm == Algorithm::ES256 {
                p256::PublicKey::from_sec1_bytes(point)
                    .map_err(|_| "invalid P-256 point".to_string())
                    .and_then(|k| k.to_public_key_der().map_err(|e| e.to_string()))
            } else {
                p384::PublicKey::from_sec1_bytes(point)
                    .map_err(|_| "invalid P-384 point".to_string())
                    .and_then(|k| k.to_public_key_der().map_err(|e| e.to_string()))
            };
            der.map(|d| d.as_bytes().to_vec())
        }
        Algorithm::EdDSA => {
            if key_type != Some(KeyType::EC_EDWARDS) {
                return Ok(Err("not an Ed25519 key".to_string()));
            }
            if params.as_deref() != Some(ED25519_PARAMS) {
                return Ok(Err("the key is on another curve".to_string()));
            }
            let Some(point) = point else {
                return Ok(Err("no CKA_EC_POINT".to_string()));
            };
            match <[u8; 32]>::try_from(unwrap_ec_point(&point, 32)) {
                Ok(raw) => Ok(crate::jwks::ed25519_spki(&raw)),
                Err(_) => Err("CKA_EC_POINT is not a 32-byte Ed25519 key".to_string()),
            }
        }
        Algorithm::PS256 | Algorithm::RS256 => {
            if key_type != Some(KeyType::RSA) {
                return Ok(Err("not an RSA key".to_string()));
            }
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Ok(Err("no modulus or exponent".to_string()));
            };
            if n.len() * 8 < 2048 {
                return Ok(Err("RSA keys must be at least 2048 bits".to_string()));
            }
            rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| e.to_string())
            .and_then(|k| {
                rsa::pkcs8::EncodePublicKey::to_public_key_der(&k).map_err(|e| e.to_string())
            })
            .map(|d| d.as_bytes().to_vec())
        }
    })
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the SEC1 point on most tokens, bare on a few.
pub(super) fn unwrap_ec_point(value: &[u8], point_len: usize) -> &[u8] {
    match value {
        [0x04, len, rest @ ..] if *len as usize == point_len && rest.len() == point_len => rest,
        _ => value,
    }
}

/// Converts a fixed-size ECDSA `r || s` signature (as PKCS#11 returns it) into ASN.1 DER.
pub(super) fn ecdsa_raw_to_der(algorithm: Algorithm, raw: &[u8]) -> Result<Vec<u8>, String> {
    match algorithm {
        Algorithm::ES256 => p256::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| format!("ECDSA P-256 signature of {} bytes, expected 64", raw.len())),
        Algorithm::ES384 => p384::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| format!("ECDSA P-384 signature of {} bytes, expected 96", raw.len())),
        Algorithm::PS256 | Algorithm::RS256 | Algorithm::EdDSA => {
            Err("not an ECDSA algorithm".to_string())
        }
    }
}
