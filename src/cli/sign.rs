//! `signet sign MODEL_PATH --server URL --key NAME`: hash the model, open a session with the
//! caller's OIDC ID token, sign the manifest and the model-signing statement in one batch, wait
//! for a checkpoint that covers both log entries, and write the signature files.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::manifest::ProvenanceArgs;
use super::{Failure, client_failure, runtime};
use crate::algorithm::Algorithm;
use crate::bundle;
use crate::client::Client;
use crate::id_token::TokenSource;
use crate::jwks::{JwkSet, spki_from_jwk};
use crate::manifest::{OUTPUT_FILES, build_with_progress};
use crate::note::VerifierKey;
use crate::receipt::{RECEIPT_VERSION, Receipt};
use crate::signature::{digest_of, verify_digest};

/// `signet sign` options.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The model: a file or a directory.
    pub model: PathBuf,
    /// The signet server, e.g. https://signet.example.
    #[arg(long)]
    pub server: String,
    /// The key to sign with.
    #[arg(long)]
    pub key: String,
    /// Read the OIDC ID token from this file (default: SIGNET_ID_TOKEN, then GitHub Actions).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The audience to ask the CI's issuer for (GitHub Actions).
    #[arg(long, default_value = "signet")]
    pub audience: String,
    /// Where to write the signature files; default: the model directory (a file model: its
    /// directory).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The log key to check checkpoints under (a vkey, or a file or URL holding one); default:
    /// the server's own (`/v1/log/vkey`).
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub log_key: Option<String>,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    pub insecure_http: bool,
    /// How long to wait for a checkpoint covering the new log entries.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub checkpoint_wait: Duration,
    /// Provenance recorded in the manifest.
    #[command(flatten)]
    pub provenance: ProvenanceArgs,
}

/// Where signature files go by default: inside a model directory, beside a model file.
pub fn default_signature_dir(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.to_path_buf()
    } else {
        match model.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

#[derive(Debug, Deserialize)]
struct KeyListing {
    name: String,
    algorithm: String,
}

#[derive(Debug, Deserialize)]
struct SessionAnswer {
    session_token: String,
}

#[derive(Debug, Deserialize)]
struct SignAnswer {
    signatures: Vec<SignedDigest>,
}

#[derive(Debug, Deserialize)]
struct SignedDigest {
    key: String,
    key_version: u32,
    key_id: String,
    algorithm: String,
    digest: String,
    signature: String,
    log_index: u64,
}

/// Runs `signet sign`.
pub fn run(args: SignArgs) -> Result<(), Failure> {
    let source =
        TokenSource::detect(args.token_file.clone(), &args.audience).map_err(Failure::usage)?;
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| default_signature_dir(&args.model));
    if !out_dir.is_dir() {
        return Err(Failure::usage(anyhow!(
            "--out-dir {} is not a directory",
            out_dir.display()
        )));
    }
    let provenance = args.provenance.to_provenance()?;
    let runtime = runtime()?;
    let client = Client::connect(&args.server, args.insecure_http).map_err(client_failure)?;
    let log_key = runtime.block_on(super::trust::log_key_or_servers(
        args.log_key.as_deref(),
        &client,
        args.insecure_http,
    ))?;
    // The key and the token are checked before hashing, so a typo or a refused token fails fast
    // rather than after minutes of hashing.
    let algorithm = runtime.block_on(key_algorithm(&client, &args.key))?;
    let session = runtime.block_on(open_session(&client, &source, &args.key))?;

    let skip: Vec<PathBuf> = OUTPUT_FILES.iter().map(|f| out_dir.join(f)).collect();
    let progress = super::progress::HashBar::new("hashing");
    let manifest =
        build_with_progress(&args.model, &provenance, &skip, &progress).map_err(Failure::usage)?;
    let mut manifest_bytes = manifest.to_canonical_json().map_err(Failure::usage)?;
    manifest_bytes.push(b'\n');
    let statement = bundle::statement(&model_name(&args.model), &manifest, &args.key)
        .map_err(Failure::usage)?;
    let envelope_digest = digest_of(algorithm, &bundle::pae(&statement));
    let manifest_digest = digest_of(algorithm, &manifest_bytes);

    runtime.block_on(async {
        let signed = sign_digests(
            &client,
            &source,
            session,
            &args.key,
            algorithm,
            &[&manifest_digest, &envelope_digest],
        )
        .await?;
        let [manifest_signed, envelope_signed] = <[SignedDigest; 2]>::try_from(signed)
            .map_err(|_| Failure::refused(anyhow!("the server did not return two signatures")))?;
        // Never write a signature that does not verify under the published key.
        let jwks = client.jwks().await.map_err(client_failure)?;
        let manifest_signature = check_signed(&jwks, &manifest_signed, &manifest_digest)?;
        let envelope_signature = check_signed(&jwks, &envelope_signed, &envelope_digest)?;
        let receipt = receipt(
            &client,
            &log_key,
            &manifest_signed,
            &envelope_signed,
            args.checkpoint_wait,
        )
        .await?;

        let hint = signing_key_hint(&jwks, &manifest_signed.key_id)?;
        let model_sig = bundle::Bundle::new(&statement, &envelope_signature, &hint)
            .to_json()
            .map_err(Failure::usage)?;
        let receipt_json = serde_json::to_vec_pretty(&receipt).map_err(Failure::usage)?;
        write_atomically(&out_dir.join("manifest.json"), &manifest_bytes)?;
        write_atomically(&out_dir.join("manifest.json.sig"), &manifest_signature)?;
        write_atomically(&out_dir.join("model.sig"), &model_sig)?;
        write_atomically(&out_dir.join("signet-receipt.json"), &receipt_json)?;
        eprintln!(
            "signet: signed {} files with {} v{} (kid {}), log entries {} and {}; wrote {}",
            manifest.files.len(),
            manifest_signed.key,
            manifest_signed.key_version,
            manifest_signed.key_id,
            manifest_signed.log_index,
            envelope_signed.log_index,
            out_dir.display()
        );
        Ok(())
    })
}

/// The model's name in the statement: its directory or file name.
fn model_name(model: &Path) -> String {
    std::fs::canonicalize(model)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".to_string())
}

async fn key_algorithm(client: &Client, key: &str) -> Result<Algorithm, Failure> {
    let keys: Vec<KeyListing> = client.get_json("/v1/keys").await.map_err(client_failure)?;
    let listing = keys
        .iter()
        .find(|k| k.name == key)
        .ok_or_else(|| Failure::refused(anyhow!("the server has no key named {key:?}")))?;
    let algorithm: Algorithm = listing
        .algorithm
        .parse()
        .map_err(|_| Failure::refused(anyhow!("key {key} has an unknown algorithm")))?;
    if algorithm.digest_algorithm().is_none() {
        return Err(Failure::refused(anyhow!(
            "key {key} is the log key: it signs checkpoints only"
        )));
    }
    Ok(algorithm)
}

/// Opens a signing session for `key` with a fresh ID token.
async fn open_session(
    client: &Client,
    source: &TokenSource,
    key: &str,
) -> Result<Zeroizing<String>, Failure> {
    let id_token = source.token().await.map_err(Failure::usage)?;
    // Two signatures: the manifest and the model-signing envelope.
    let request = json!({"keys": [key], "max_signatures": 2, "ttl_seconds": 600});
    let session: SessionAnswer = client
        .post_json("/v1/sessions", &id_token, &request)
        .await
        .map_err(|e| client_failure(e).context_msg("opening a signing session"))?;
    Ok(Zeroizing::new(session.session_token))
}

/// Signs the digests in one batch and ends the session. A session that expired while the model
/// was hashed is replaced once, with a fresh ID token.
async fn sign_digests(
    client: &Client,
    source: &TokenSource,
    mut session: Zeroizing<String>,
    key: &str,
    algorithm: Algorithm,
    digests: &[&[u8]],
) -> Result<Vec<SignedDigest>, Failure> {
    let digest_texts: Vec<String> = digests
        .iter()
        .map(|d| {
            let name = algorithm.digest_algorithm().map_or("message", |a| a.name());
            format!("{name}:{}", hex::encode(d))
        })
        .collect();
    let request = json!({"key": key, "digests": digest_texts});
    let mut renewed = false;
    loop {
        match client
            .post_json::<_, SignAnswer>("/v1/sign", &session, &request)
            .await
        {
            Ok(answer) => {
                if let Err(e) = client.delete("/v1/sessions/current", &session).await {
                    eprintln!("signet: warning: could not end the session: {e}");
                }
                return Ok(answer.signatures);
            }
            Err(e) if e.code() == "session_expired" && !renewed => {
                eprintln!("signet: the session expired while hashing; opening a new one");
                renewed = true;
                session = open_session(client, source, key).await?;
            }
            Err(e) => return Err(client_failure(e).context_msg("signing")),
        }
    }
}

/// model-signing's hint for the key that signed.
fn signing_key_hint(jwks: &JwkSet, kid: &str) -> Result<String, Failure> {
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| Failure::refused(anyhow!("kid {kid} is not in the server's JWKS")))?;
    let (_, spki) = spki_from_jwk(jwk).map_err(Failure::refused)?;
    Ok(bundle::public_key_hint(&spki))
}

/// Checks one returned signature against the JWKS and the digest that was sent.
fn check_signed(jwks: &JwkSet, signed: &SignedDigest, digest: &[u8]) -> Result<Vec<u8>, Failure> {
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == signed.key_id)
        .ok_or_else(|| {
            Failure::refused(anyhow!(
                "the server signed with kid {} that its JWKS lacks",
                signed.key_id
            ))
        })?;
    let signature = STANDARD
        .decode(&signed.signature)
        .map_err(|_| Failure::refused(anyhow!("the server's signature is not base64")))?;
    if !signed.digest.ends_with(&hex::encode(digest)) || jwk.alg != signed.algorithm {
        return Err(Failure::refused(anyhow!(
            "the server answered for another digest or algorithm"
        )));
    }
    verify_digest(jwk, digest, &signature)
        .map_err(|e| Failure::refused(anyhow!("the server's signature does not verify: {e}")))?;
    Ok(signature)
}

/// Waits for a checkpoint covering both entries and collects their leaves and inclusion proofs.
async fn receipt(
    client: &Client,
    log_key: &VerifierKey,
    manifest_signed: &SignedDigest,
    envelope_signed: &SignedDigest,
    wait: Duration,
) -> Result<Receipt, Failure> {
    let indices = [manifest_signed.log_index, envelope_signed.log_index];
    let (note, _, proven) =
        super::receipt::prove_in_checkpoint(client, log_key, &indices, wait).await?;
    let mut logged = Vec::new();
    for (signed, (entry, event)) in [manifest_signed, envelope_signed].into_iter().zip(proven) {
        if event.event["signature"] != signed.signature.as_str() {
            return Err(Failure::refused(anyhow!(
                "log entry {} does not record the signature the server returned",
                entry.log_index
            )));
        }
        logged.push(entry);
    }
    let model_sig = logged
        .pop()
        .context("two entries")
        .map_err(Failure::usage)?;
    let manifest_signature = logged
        .pop()
        .context("two entries")
        .map_err(Failure::usage)?;
    Receipt {
        receipt_version: RECEIPT_VERSION,
        key: manifest_signed.key.clone(),
        key_version: manifest_signed.key_version,
        key_id: manifest_signed.key_id.clone(),
        algorithm: manifest_signed.algorithm.clone(),
        manifest_signature,
        model_sig,
        checkpoint: note,
    }
    .with_tlog_proofs()
    .map_err(Failure::usage)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let temporary = path.with_extension("signet-tmp");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| Failure::usage(anyhow!("cannot write {}: {e}", path.display())))
}
