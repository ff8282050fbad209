//! `signet verify MODEL_PATH (--trust FILE_OR_URL | --jwks URL_OR_FILE --log-key VKEY)`: the
//! deployment-side check, offline with files. The log key is pinned (by `--log-key`, or as the
//! key the trust root names); nothing is taken from the material being checked. With
//! `--server` it also proves the receipt's checkpoint consistent with the log's latest one.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use super::sign::default_signature_dir;
use super::trust::{DEFAULT_MAX_TRUST_AGE, TrustSource, load_log_key, load_trust};
use super::{Failure, client_failure, runtime};
use crate::checkpoint::verify_checkpoint;
use crate::client::{Client, load_jwks};
use crate::note::VerifierKey;
use crate::verify::{KeySource, Request, Verified, signer_claim, verify_model};

/// `signet verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model: a file or a directory.
    pub model: PathBuf,
    /// Where the signature files are; default: the model directory (a file model: its directory).
    #[arg(long)]
    pub sig_dir: Option<PathBuf>,
    /// The log's trust root (`signet trust`), a file or a URL: every key version it proves,
    /// valid by log order, so models signed before a rotation or retirement still verify.
    #[arg(long, value_name = "FILE_OR_URL", conflicts_with = "jwks")]
    pub trust: Option<String>,
    /// The signer's JWKS (a URL or a file): only the versions it still lists. Needs --log-key.
    #[arg(long, value_name = "URL_OR_FILE")]
    pub jwks: Option<String>,
    /// The pinned log key: a vkey (origin+id+key), or a file or URL holding one.
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub log_key: Option<String>,
    /// The oldest trust root accepted, by its checkpoint's time.
    #[arg(long, default_value = DEFAULT_MAX_TRUST_AGE, value_parser = humantime::parse_duration)]
    pub max_trust_age: Duration,
    /// Where the last accepted trust root is remembered (default: the user's state folder).
    #[arg(long)]
    pub trust_state: Option<PathBuf>,
    /// A claim the signer must have had, e.g. repository=acme/models (repeatable); `iss`, `sub`
    /// and `policy` name the caller, anything else a build claim recorded in the log.
    #[arg(long = "identity", value_name = "CLAIM=VALUE")]
    pub identity: Vec<String>,
    /// Also check the receipt against the server's current log (consistency of checkpoints).
    #[arg(long)]
    pub server: Option<String>,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    pub insecure_http: bool,
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
    if args.trust.is_none() && (args.jwks.is_none() || args.log_key.is_none()) {
        return Err(Failure::usage(anyhow!(
            "give --trust FILE_OR_URL, or both --jwks URL_OR_FILE and --log-key VKEY_OR_FILE \
             (the log key must be pinned: it is never taken from the JWKS)"
        )));
    }
    let sig_dir = args
        .sig_dir
        .clone()
        .unwrap_or_else(|| default_signature_dir(&args.model));
    let runtime = runtime()?;
    let log_key = match &args.log_key {
        Some(source) => Some(runtime.block_on(load_log_key(source, args.insecure_http))?),
        None => None,
    };
    let progress = super::progress::HashBar::new("verifying");
    let verified = if let Some(location) = &args.trust {
        let trust = runtime.block_on(load_trust(&TrustSource {
            location,
            log_key: log_key.clone(),
            max_age: args.max_trust_age,
            state: args.trust_state.as_deref(),
            server: args.server.as_deref(),
            insecure_http: args.insecure_http,
        }))?;
        verify(
            &args,
            &sig_dir,
            &identity,
            KeySource::Trust(&trust),
            &progress,
        )?
    } else {
        let (Some(jwks), Some(log_key)) = (&args.jwks, &log_key) else {
            return Err(Failure::usage(anyhow!("--jwks needs --log-key")));
        };
        let jwks = runtime
            .block_on(load_jwks(jwks, args.insecure_http))
            .map_err(client_failure)?;
        let keys = KeySource::Jwks {
            jwks: &jwks,
            log_key,
        };
        verify(&args, &sig_dir, &identity, keys, &progress)?
    };
    let pinned = log_key.unwrap_or_else(|| verified.log_key.clone());
    if let Some(server) = &args.server {
        runtime.block_on(check_against_log(
            server,
            args.insecure_http,
            &pinned,
            &verified,
        ))?;
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

fn verify(
    args: &VerifyArgs,
    sig_dir: &std::path::Path,
    identity: &[(String, String)],
    keys: KeySource<'_>,
    progress: &super::progress::HashBar,
) -> Result<Verified, Failure> {
    let request = Request {
        model: &args.model,
        sig_dir,
        keys,
        identity,
        progress,
    };
    verify_model(&request).map_err(|e| {
        if e.is_io() {
            Failure::usage(e)
        } else {
            Failure::refused(e)
        }
    })
}

/// Proves that the receipt's checkpoint is a prefix of the server's latest signed checkpoint.
async fn check_against_log(
    server: &str,
    insecure_http: bool,
    log_key: &VerifierKey,
    verified: &Verified,
) -> Result<(), Failure> {
    let client = Client::connect(server, insecure_http).map_err(client_failure)?;
    let note = client
        .get_text("/v1/log/checkpoint")
        .await
        .map_err(client_failure)?;
    let old = &verified.checkpoint;
    let latest = verify_checkpoint(&note, log_key)
        .map_err(|e| Failure::refused(anyhow!("the server's latest checkpoint: {e}")))?;
    if latest.size < old.size {
        return Err(Failure::refused(anyhow!(
            "the log shrank: its latest checkpoint has size {} but the receipt's has size {}",
            latest.size,
            old.size
        )));
    }
    super::trust::prove_consistent(
        server,
        insecure_http,
        old.size,
        &old.root,
        latest.size,
        &latest.root,
    )
    .await
}
