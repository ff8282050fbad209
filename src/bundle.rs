//! `model.sig`: a Sigstore bundle (v0.3) holding a DSSE envelope of an in-toto Statement v1 in
//! the OpenSSF model-signing format (predicate `https://model_signing/signature/v1.0`), so that
//! `model_signing verify key` accepts signet's signatures. signet's own fields go in the
//! predicate under `signet`, which model-signing v1.0 verifiers ignore.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::jwks::spki_to_pem;
use crate::manifest::{Manifest, OUTPUT_FILES};

/// The bundle's media type.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The model-signing predicate.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

/// Why a bundle could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The statement could not be serialized.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The bundle is not what this module writes.
    #[error("model.sig is malformed: {0}")]
    Malformed(String),
}

/// Top-level paths model-signing leaves out by default (`--ignore-git-paths`). signet's manifest
/// covers them; the statement does not, so that model-signing verifiers agree with it.
const GIT_PATHS: &[&str] = &[".gitattributes", ".github", ".gitignore"];

/// Whether model-signing ignores this manifest path by default.
pub fn ignored_by_model_signing(path: &str) -> bool {
    GIT_PATHS
        .iter()
        .any(|git| path == *git || path.strip_prefix(git).is_some_and(|r| r.starts_with('/')))
}

/// The statement's bytes (canonical JSON) for a model's manifest: one resource per file with
/// its SHA-256, the subject digest over all of them, and signet's provenance in the predicate.
pub fn statement(model_name: &str, manifest: &Manifest, key: &str) -> Result<Vec<u8>, BundleError> {
    let mut root = Sha256::new();
    let mut resources = Vec::with_capacity(manifest.files.len());
    for file in manifest
        .files
        .iter()
        .filter(|f| !ignored_by_model_signing(&f.path))
    {
        let hex_digest = file
            .digest
            .strip_prefix("sha256:")
            .ok_or_else(|| BundleError::Malformed(format!("{} has no sha256 digest", file.path)))?;
        let raw = hex::decode(hex_digest)
            .map_err(|_| BundleError::Malformed(format!("{} has a bad digest", file.path)))?;
        root.update(&raw);
        resources.push(json!({"name": file.path, "algorithm": "sha256", "digest": hex_digest}));
    }
    // signet's outputs sit in the model directory; model-signing verifiers must skip them.
    let ignore_paths: Vec<&str> = OUTPUT_FILES.iter().chain(GIT_PATHS).copied().collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": hex::encode(root.finalize())}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": true,
                "ignore_paths": ignore_paths,
            },
            "resources": resources,
            "signet": {
                "key": key,
                "git_commit": manifest.git_commit,
                "dataset": manifest.dataset,
                "training_image": manifest.training_image,
                "parameters": manifest.parameters,
                "tool": manifest.tool,
            },
        },
    });
    Ok(to_canonical_vec(&statement)?)
}

/// The bundle's key hint: model-signing 1.x compares the hex SHA-256 of the public key's PEM
/// (SubjectPublicKeyInfo, 64-column base64, final newline) with the key it is given.
pub fn public_key_hint(spki: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_to_pem(spki).as_bytes()))
}

/// DSSE's pre-authentication encoding of a statement: what is actually signed.
pub fn pae(payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!(
        "DSSEv1 {} {} {} ",
        PAYLOAD_TYPE.len(),
        PAYLOAD_TYPE,
        payload.len()
    )
    .into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

/// A Sigstore bundle with a DSSE envelope and a public-key hint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// [`BUNDLE_MEDIA_TYPE`].
    pub media_type: String,
    /// Which key signed.
    pub verification_material: VerificationMaterial,
    /// The envelope.
    pub dsse_envelope: Envelope,
}

/// The bundle's verification material: a public key named by a hint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// The key.
    pub public_key: PublicKeyHint,
}

/// A public key identifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicKeyHint {
    /// Hex SHA-256 of the key's PEM, as model-signing computes it (see [`public_key_hint`]).
    pub hint: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The statement, base64.
    pub payload: String,
    /// [`PAYLOAD_TYPE`].
    pub payload_type: String,
    /// One signature.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// DER signature, base64.
    pub sig: String,
}

impl Bundle {
    /// The bundle of a signed statement by the key with this [`public_key_hint`].
    pub fn new(statement: &[u8], signature: &[u8], hint: &str) -> Bundle {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.to_string(),
            verification_material: VerificationMaterial {
                public_key: PublicKeyHint {
                    hint: hint.to_string(),
                },
            },
            dsse_envelope: Envelope {
                payload: STANDARD.encode(statement),
                payload_type: PAYLOAD_TYPE.to_string(),
                signatures: vec![EnvelopeSignature {
                    sig: STANDARD.encode(signature),
                }],
            },
        }
    }

    /// The bundle as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, BundleError> {
        serde_json::to_vec_pretty(self).map_err(|e| BundleError::Malformed(e.to_string()))
    }

    /// Reads a bundle, checking its media and payload types.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let bundle: Bundle =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if bundle.media_type != BUNDLE_MEDIA_TYPE {
            return Err(BundleError::Malformed(format!(
                "media type {}",
                bundle.media_type
            )));
        }
        if bundle.dsse_envelope.payload_type != PAYLOAD_TYPE {
            return Err(BundleError::Malformed("payload type".into()));
        }
        Ok(bundle)
    }

    /// The signed statement's bytes and the one signature.
    pub fn payload_and_signature(&self) -> Result<(Vec<u8>, Vec<u8>), BundleError> {
        let payload = STANDARD
            .decode(&self.dsse_envelope.payload)
            .map_err(|_| BundleError::Malformed("payload is not base64".into()))?;
        let [signature] = self.dsse_envelope.signatures.as_slice() else {
            return Err(BundleError::Malformed(
                "expected exactly one signature".into(),
            ));
        };
        let signature = STANDARD
            .decode(&signature.sig)
            .map_err(|_| BundleError::Malformed("signature is not base64".into()))?;
        Ok((payload, signature))
    }
}

/// The `(path, hex digest)` resources a statement lists, after checking the subject digest.
pub fn statement_resources(statement: &[u8]) -> Result<Vec<(String, String)>, BundleError> {
    let statement: Value = serde_json::from_slice(statement)
        .map_err(|_| BundleError::Malformed("the statement is not JSON".into()))?;
    if statement["_type"] != STATEMENT_TYPE || statement["predicateType"] != PREDICATE_TYPE {
        return Err(BundleError::Malformed(
            "not a model-signing statement".into(),
        ));
    }
    let malformed = || BundleError::Malformed("the statement's resources".into());
    let mut root = Sha256::new();
    let mut resources = Vec::new();
    for resource in statement["predicate"]["resources"]
        .as_array()
        .ok_or_else(malformed)?
    {
        let name = resource["name"].as_str().ok_or_else(malformed)?;
        let digest = resource["digest"].as_str().ok_or_else(malformed)?;
        root.update(hex::decode(digest).map_err(|_| malformed())?);
        resources.push((name.to_string(), digest.to_string()));
    }
    if statement["subject"][0]["digest"]["sha256"] != hex::encode(root.finalize()) {
        return Err(BundleError::Malformed(
            "the subject digest does not cover the resources".into(),
        ));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // DSSE protocol.md: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
        assert_eq!(
            pae(b"hello"),
            b"DSSEv1 28 application/vnd.in-toto+json 5 hello".to_vec()
        );
    }

    #[test]
    fn git_paths_are_left_out_at_the_top_level_only() {
        assert!(ignored_by_model_signing(".gitattributes"));
        assert!(ignored_by_model_signing(".github/workflows/ci.yml"));
        assert!(!ignored_by_model_signing(".githubx"));
        assert!(!ignored_by_model_signing("sub/.gitignore"));
    }
}
