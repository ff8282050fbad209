//! A signature's validity by its place in the log, at the bounds of a version's span.
use super::*;
use crate::checkpoint::Checkpoint;

fn trust_with(
    created: u64,
    deactivated: Option<u64>,
    revoked: Option<(u64, i64)>,
) -> VerifiedTrust {
    let key = p256::SecretKey::from_slice(&[3; 32]).expect("key");
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(&key.public_key()).expect("spki");
    let jwk = jwks::jwk_from_spki(spki.as_bytes(), Algorithm::ES256).expect("jwk");
    let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let log_key =
        VerifierKey::new("signet.test/log", &signing.verifying_key().to_bytes()).expect("vkey");
    let mut versions = BTreeMap::new();
    versions.insert(
        ("model-signing".to_string(), 2),
        ProvenVersion {
            jwk,
            created_index: created,
            deactivated_index: deactivated,
            revoked,
        },
    );
    VerifiedTrust {
        log_key,
        checkpoint: Checkpoint {
            origin: "signet.test/log".into(),
            size: 1000,
            root: [0; 32],
            time: Some(0),
        },
        versions,
    }
}

#[test]
fn a_signature_is_valid_strictly_inside_its_versions_span() {
    let trust = trust_with(10, Some(20), None);
    let kid = trust.versions[&("model-signing".to_string(), 2)]
        .jwk
        .kid
        .clone();
    let at = |index| trust.signing_key("model-signing", 2, &kid, index, 0);
    assert!(matches!(at(10), Err(TrustError::OutsideSpan { .. })));
    assert!(at(11).is_ok());
    assert!(at(19).is_ok());
    assert!(matches!(at(20), Err(TrustError::OutsideSpan { .. })));
    // Another kid, or a version the root does not prove.
    assert!(matches!(
        trust.signing_key("model-signing", 2, "other-kid", 11, 0),
        Err(TrustError::UnknownVersion { .. })
    ));
    assert!(matches!(
        trust.signing_key("model-signing", 3, &kid, 11, 0),
        Err(TrustError::UnknownVersion { .. })
    ));
}

#[test]
fn a_revocation_splits_at_compromised_since() {
    let trust = trust_with(10, Some(20), Some((30, 1_700_000_000)));
    let kid = trust.versions[&("model-signing".to_string(), 2)]
        .jwk
        .kid
        .clone();
    assert!(
        trust
            .signing_key("model-signing", 2, &kid, 15, 1_699_999_999)
            .is_ok()
    );
    assert!(matches!(
        trust.signing_key("model-signing", 2, &kid, 16, 1_700_000_000),
        Err(TrustError::Revoked {
            revoked_index: 30,
            ..
        })
    ));
}
