//! `signet verify MODEL_PATH --sig-dir DIR --jwks URL_OR_FILE [--identity K=V]...`: the
//! deployment-side check. Offline with a JWKS file; with `--server` it also proves that the
//! receipt's checkpoint is consistent with the log's latest one (no forked or rewritten log).
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::sign::default_signature_dir;
use super::{Failure, client_failure, runtime};
use crate::client::{Client, LogProof, load_jwks};
use crate::jwks::JwkSet;
use crate::log::checkpoint::verify_checkpoint;
use crate::log::merkle;
use crate::verify::{Request, Verified, signer_claim, verify_model};

/// `signet verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model: a file or a directory.
    pub model: PathBuf,
    /// Where the signature files are; default: the model directory (a file model: its directory).
    #[arg(long)]
    pub sig_dir: Option<PathBuf>,
    /// The signer's JWKS: a URL (https://signet.example/.well-known/jwks.json) or a file.
    #[arg(long)]
    pub jwks: String,
    /// A claim the signer must have had, e.g. repository=acme/models (repeatable); `iss`, `sub`
    /// and `policy` name the caller, anything else a build claim recorded in the log.
    #[arg(long = "identity", value_name = "CLAIM=VALUE")]
    pub identity: Vec<String>,
    /// Also check the receipt against the server's current log (consistency of checkpoints).
    #[arg(long)]
    pub server: Option<String>,
}

/// Runs `signet verify`.
pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    let identity: Vec<(String, String)> = args
        .identity
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    Failure::usage(anyhow!("--identity must be CLAIM=VALUE, got {pair:?}"))
                })
        })
        .collect::<Result<_, _>>()?;
    let sig_dir = args
        .sig_dir
        .clone()
        .unwrap_or_else(|| default_signature_dir(&args.model));
    let runtime = runtime()?;
    let jwks = runtime
        .block_on(load_jwks(&args.jwks))
        .map_err(client_failure)?;
    let progress = super::progress::HashBar::new("verifying");
    let request = Request {
        model: &args.model,
        sig_dir: &sig_dir,
        jwks: &jwks,
        identity: &identity,
        progress: &progress,
    };
    let verified = verify_model(&request).map_err(|e| {
        if e.is_io() {
            Failure::usage(e)
        } else {
            Failure::refused(e)
        }
    })?;
    if let Some(server) = &args.server {
        runtime.block_on(check_against_log(server, &jwks, &verified))?;
    }
    let event = &verified.entry.event;
    let who = |claim| signer_claim(event, claim).unwrap_or_else(|| "?".into());
    println!(
        "verified: {} files; signed by {} v{} (kid {}) for {} ({}); log entry {} in checkpoint {} of {}",
        verified.files,
        verified.receipt.key,
        verified.receipt.key_version,
        verified.receipt.key_id,
        who("sub"),
        who("iss"),
        verified.entry.index,
        verified.checkpoint.origin,
        verified.checkpoint.size,
    );
    Ok(())
}

/// Proves that the receipt's checkpoint is a prefix of the server's latest signed checkpoint.
async fn check_against_log(
    server: &str,
    jwks: &JwkSet,
    verified: &Verified,
) -> Result<(), Failure> {
    let client = Client::new(server).map_err(client_failure)?;
    let note = client
        .get_text("/v1/log/checkpoint")
        .await
        .map_err(client_failure)?;
    let old = &verified.checkpoint;
    let latest = verify_checkpoint(&note, Some(&old.origin), jwks)
        .map_err(|e| Failure::refused(anyhow!("the server's latest checkpoint: {e}")))?;
    if latest.size < old.size {
        return Err(Failure::refused(anyhow!(
            "the log shrank: its latest checkpoint has size {} but the receipt's has size {}",
            latest.size,
            old.size
        )));
    }
    let proof: LogProof = client
        .get_json(&format!(
            "/v1/log/proof/consistency?from={}&to={}",
            old.size, latest.size
        ))
        .await
        .map_err(client_failure)?;
    let hashes = merkle::decode_hashes(&proof.hashes)
        .ok_or_else(|| Failure::refused(anyhow!("a consistency proof hash is malformed")))?;
    merkle::verify_consistency(old.size, latest.size, &old.root, &latest.root, &hashes).map_err(
        |e| {
            Failure::refused(anyhow!(
                "the receipt's checkpoint of size {} is not consistent with the log's checkpoint of size {}: {}",
                old.size,
                latest.size,
                e.0
            ))
        },
    )?;
    Ok(())
}
