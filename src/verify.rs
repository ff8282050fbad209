//! Verifying a signed model at deployment, offline: the receipt's log entries against its
//! checkpoint under the pinned log key, the signing version's key from a verified trust root (valid
//! by log order, so routine retirement never breaks old signatures) or from a JWKS, the
//! signatures, the signer's identity from the entries, and every file against the manifest.
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::algorithm::Algorithm;
use crate::bundle::{self, Bundle, BundleError};
use crate::checkpoint::Checkpoint;
use crate::clock::parse_rfc3339;
use crate::jwks::{Jwk, JwkSet};
use crate::manifest::{
    self, Difference, FileEntry, HashProgress, Manifest, ManifestError, OUTPUT_FILES,
};
use crate::note::VerifierKey;
use crate::receipt::{ProvenEntry, Receipt, ReceiptError};
use crate::signature::{SignatureError, digest_of, verify_digest};
use crate::trust::{TrustError, VerifiedTrust};

/// Why a model did not verify. Every variant but `Io` and `Read` means "do not deploy" (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A signature file is missing.
    #[error("{0} is missing: the model is not signed (or --sig-dir is wrong)")]
    MissingFile(PathBuf),
    /// A signature file cannot be read (exit 2).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A signature file is not in its format.
    #[error("{file} is malformed: {reason}")]
    Malformed {
        /// The file.
        file: &'static str,
        /// Why.
        reason: String,
    },
    /// The receipt names a key the JWKS does not publish.
    #[error(
        "key {kid} ({key} v{version}) is not in the JWKS: a JWKS lists only versions that verify \
         new signatures (use --trust for retired ones), or it was never published there"
    )]
    UnknownKey {
        /// The kid.
        kid: String,
        /// The key's name.
        key: String,
        /// Its version.
        version: u32,
    },
    /// A signature does not verify.
    #[error("{file}: {source}")]
    Signature {
        /// Which signature.
        file: &'static str,
        /// Why.
        source: SignatureError,
    },
    /// The receipt does not prove its entries.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// The trust root refuses the signing version at the signature's place in the log.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A log entry does not record this signature.
    #[error("log entry {index} does not record {file}: {reason}")]
    EntryMismatch {
        /// The entry.
        index: u64,
        /// The signature file.
        file: &'static str,
        /// What differs.
        reason: String,
    },
    /// The signer is not who `--identity` demands.
    #[error("the signer's {claim} is {found}, not {expected} (log entry {index})")]
    Identity {
        /// The claim.
        claim: String,
        /// Demanded.
        expected: String,
        /// Recorded.
        found: String,
        /// The entry.
        index: u64,
    },
    /// The model's files differ from the signed manifest; the first difference leads.
    #[error("{}", describe_differences(.0))]
    Files(Vec<Difference>),
    /// The model could not be hashed (exit 2 when it is an I/O error).
    #[error(transparent)]
    Read(#[from] ManifestError),
}

impl VerifyError {
    /// Whether this is an I/O problem (exit 2) rather than a failed verification (exit 1).
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            VerifyError::Io { .. } | VerifyError::Read(ManifestError::Read { .. })
        )
    }
}

fn describe_differences(differences: &[Difference]) -> String {
    let mut text = match differences.first() {
        Some(first) => first.to_string(),
        None => "the files differ from the manifest".to_string(),
    };
    if differences.len() > 1 {
        text.push_str(&format!(" (and {} more:", differences.len() - 1));
        for other in &differences[1..differences.len().min(11)] {
            text.push_str(&format!(" {other};"));
        }
        if differences.len() > 11 {
            text.push_str(" ...");
        }
        text.push(')');
    }
    text
}

/// What a successful verification established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Files checked.
    pub files: usize,
    /// The receipt (key, version, kid, entries, checkpoint).
    pub receipt: Receipt,
    /// The checkpoint the entries are proven in.
    pub checkpoint: Checkpoint,
    /// The log key it verified under.
    pub log_key: VerifierKey,
    /// The manifest signature's log entry.
    pub entry: ProvenEntry,
    /// The signed manifest.
    pub manifest: Manifest,
}

/// Where the verifier takes the signing keys from, and the log key it pinned.
#[derive(Debug, Clone, Copy)]
pub enum KeySource<'a> {
    /// A verified trust root: every version it proves, valid by log order.
    Trust(&'a VerifiedTrust),
    /// A JWKS (only the versions it still lists) and the pinned log key.
    Jwks {
        /// The published keys.
        jwks: &'a JwkSet,
        /// The pinned log key.
        log_key: &'a VerifierKey,
    },
}

impl KeySource<'_> {
    fn log_key(&self) -> &VerifierKey {
        match self {
            KeySource::Trust(trust) => &trust.log_key,
            KeySource::Jwks { log_key, .. } => log_key,
        }
    }
}

/// What to verify.
pub struct Request<'a> {
    /// The model file or directory.
    pub model: &'a Path,
    /// Where `manifest.json`, `manifest.json.sig`, `model.sig` and `signet-receipt.json` are.
    pub sig_dir: &'a Path,
    /// The signing keys and the pinned log key.
    pub keys: KeySource<'a>,
    /// Claims demanded of the signer: `iss`, `sub`, `policy` or any recorded build claim.
    pub identity: &'a [(String, String)],
    /// Told how hashing advances.
    pub progress: &'a dyn HashProgress,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, VerifyError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            VerifyError::MissingFile(path)
        } else {
            VerifyError::Io { path, source }
        }
    })
}

/// Verifies a signed model; the cryptographic checks come first, then every file is hashed.
pub fn verify_model(request: &Request<'_>) -> Result<Verified, VerifyError> {
    let manifest_bytes = read(request.sig_dir, "manifest.json")?;
    let manifest_signature = read(request.sig_dir, "manifest.json.sig")?;
    let bundle_bytes = read(request.sig_dir, "model.sig")?;
    let receipt: Receipt = serde_json::from_slice(&read(request.sig_dir, "signet-receipt.json")?)
        .map_err(|e| VerifyError::Malformed {
        file: "signet-receipt.json",
        reason: e.to_string(),
    })?;

    // The entries first: under the pinned log key, they say which version signed and where in
    // the log, which decides whether that version could sign there.
    let checkpoint = receipt.checkpoint(request.keys.log_key())?;
    receipt.check_tlog_proofs(request.keys.log_key())?;
    let entry = receipt.manifest_signature.prove(&checkpoint)?;
    let envelope_entry = receipt.model_sig.prove(&checkpoint)?;
    let jwk = match request.keys {
        KeySource::Jwks { jwks, .. } => find_key(jwks, &receipt)?,
        // Both entries must lie within the version's active span in the log.
        KeySource::Trust(trust) => {
            let signing_key = |proven: &ProvenEntry| {
                let time = proven.event["time"]
                    .as_str()
                    .and_then(parse_rfc3339)
                    .ok_or_else(|| VerifyError::EntryMismatch {
                        index: proven.index,
                        file: "signet-receipt.json",
                        reason: "it has no time".into(),
                    })?;
                Ok::<_, VerifyError>(trust.signing_key(
                    &receipt.key,
                    receipt.key_version,
                    &receipt.key_id,
                    proven.index,
                    time,
                )?)
            };
            signing_key(&envelope_entry)?;
            signing_key(&entry)?
        }
    };
    if jwk.alg != receipt.algorithm {
        return Err(VerifyError::Malformed {
            file: "signet-receipt.json",
            reason: format!(
                "it says {} but key {} is {}",
                receipt.algorithm, jwk.kid, jwk.alg
            ),
        });
    }
    let algorithm: Algorithm = jwk.alg.parse().map_err(|_| VerifyError::Malformed {
        file: "JWKS",
        reason: format!("key {} has an unknown alg", jwk.kid),
    })?;
    let manifest_digest = digest_of(algorithm, &manifest_bytes);
    verify_digest(jwk, &manifest_digest, &manifest_signature).map_err(|source| {
        VerifyError::Signature {
            file: "manifest.json.sig",
            source,
        }
    })?;
    let bundle_malformed = |e: BundleError| VerifyError::Malformed {
        file: "model.sig",
        reason: e.to_string(),
    };
    let bundle = Bundle::parse(&bundle_bytes).map_err(bundle_malformed)?;
    let (statement, envelope_signature) =
        bundle.payload_and_signature().map_err(bundle_malformed)?;
    let envelope_digest = digest_of(algorithm, &bundle::pae(&statement));
    verify_digest(jwk, &envelope_digest, &envelope_signature).map_err(|source| {
        VerifyError::Signature {
            file: "model.sig",
            source,
        }
    })?;
    check_entry(
        &entry,
        "manifest.json.sig",
        &receipt,
        algorithm,
        &manifest_digest,
        &manifest_signature,
    )?;
    check_entry(
        &envelope_entry,
        "model.sig",
        &receipt,
        algorithm,
        &envelope_digest,
        &envelope_signature,
    )?;
    for (claim, expected) in request.identity {
        check_identity(&entry, claim, expected)?;
    }

    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| VerifyError::Malformed {
            file: "manifest.json",
            reason: e.to_string(),
        })?;
    let signed_resources = bundle::statement_resources(&statement).map_err(bundle_malformed)?;
    let listed: Vec<(String, String)> = manifest
        .files
        .iter()
        .filter(|f| !bundle::ignored_by_model_signing(&f.path))
        .map(|f| {
            let hex = f.digest.strip_prefix("sha256:").unwrap_or(&f.digest);
            (f.path.clone(), hex.to_string())
        })
        .collect();
    if signed_resources != listed {
        return Err(VerifyError::Malformed {
            file: "model.sig",
            reason: "its statement lists other files than manifest.json".into(),
        });
    }

    let skip: Vec<PathBuf> = OUTPUT_FILES
        .iter()
        .map(|f| request.sig_dir.join(f))
        .collect();
    let actual = manifest::build_files(request.model, &skip, request.progress)?;
    check_files(&manifest.files, &actual)?;
    Ok(Verified {
        files: actual.len(),
        receipt,
        checkpoint,
        log_key: request.keys.log_key().clone(),
        entry,
        manifest,
    })
}

fn find_key<'a>(jwks: &'a JwkSet, receipt: &Receipt) -> Result<&'a Jwk, VerifyError> {
    jwks.keys
        .iter()
        .find(|k| k.kid == receipt.key_id)
        .ok_or_else(|| VerifyError::UnknownKey {
            kid: receipt.key_id.clone(),
            key: receipt.key.clone(),
            version: receipt.key_version,
        })
}

/// The entry must be the `signature` event of this key version, digest and signature.
fn check_entry(
    entry: &ProvenEntry,
    file: &'static str,
    receipt: &Receipt,
    algorithm: Algorithm,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let event = &entry.event;
    let mismatch = |reason: String| VerifyError::EntryMismatch {
        index: entry.index,
        file,
        reason,
    };
    if event["kind"] != "signature" {
        return Err(mismatch(format!("it is a {} event", event["kind"])));
    }
    if event["key_id"] != receipt.key_id.as_str()
        || event["key"] != receipt.key.as_str()
        || event["key_version"] != receipt.key_version
    {
        return Err(mismatch("it names another key or version".into()));
    }
    let digest_name = algorithm.digest_algorithm().map_or("message", |d| d.name());
    let expected_digest = format!("{digest_name}:{}", hex::encode(digest));
    if event["digest"] != expected_digest.as_str() {
        return Err(mismatch("it records another digest".into()));
    }
    if event["signature"] != STANDARD.encode(signature).as_str() {
        return Err(mismatch("it records another signature".into()));
    }
    Ok(())
}

/// The value of `claim` for the signer, from the log entry: `iss`, `sub` and `policy` name the
/// caller; anything else is a recorded build claim.
pub fn signer_claim(event: &Value, claim: &str) -> Option<String> {
    let value = match claim {
        "iss" | "issuer" => &event["issuer"],
        "sub" | "subject" => &event["subject"],
        "policy" => &event["policy"],
        other => &event["claims"][other],
    };
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn check_identity(entry: &ProvenEntry, claim: &str, expected: &str) -> Result<(), VerifyError> {
    let found = signer_claim(&entry.event, claim);
    if found.as_deref() == Some(expected) {
        return Ok(());
    }
    Err(VerifyError::Identity {
        claim: claim.to_string(),
        expected: expected.to_string(),
        found: found.unwrap_or_else(|| "not recorded".into()),
        index: entry.index,
    })
}

fn check_files(signed: &[FileEntry], actual: &[FileEntry]) -> Result<(), VerifyError> {
    let differences = manifest::compare(signed, actual);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::Files(differences))
    }
}
