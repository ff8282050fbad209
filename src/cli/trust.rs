//! `signet trust --server URL [-o FILE]`: fetch the log's trust root, check every proof in it, and
//! write it for verifiers. Also the pins every verifying command shares: a log key given as a
//! vkey, a file or a URL, and trust roots checked against what this machine saw before.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Failure, client_failure, runtime};
use crate::client::{Client, LogProof, load_text};
use crate::clock::{Clock, SystemClock};
use crate::merkle::{self, Hash};
use crate::note::VerifierKey;
use crate::trust::{TrustRoot, VerifiedTrust};

/// The default `--max-trust-age`.
pub const DEFAULT_MAX_TRUST_AGE: &str = "30days";

/// `signet trust` options.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The signet server, e.g. https://signet.example.
    #[arg(long)]
    pub server: String,
    /// Write the trust root here (default: standard output).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// The log key to check it under (a vkey, or a file or URL holding one). Without it the
    /// root is checked under the log key it names, which you should compare with the one your
    /// security team published.
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub log_key: Option<String>,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    pub insecure_http: bool,
}

/// Runs `signet trust`.
pub fn run(args: TrustArgs) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let client = Client::connect(&args.server, args.insecure_http).map_err(client_failure)?;
        let text = client.get_text("/v1/trust").await.map_err(client_failure)?;
        let root = parse_root(&text)?;
        let pinned = match &args.log_key {
            Some(source) => load_log_key(source, args.insecure_http).await?,
            None => {
                let named = VerifierKey::parse(&root.log_key).map_err(|e| {
                    Failure::refused(anyhow!("the server's trust root: log_key: {e}"))
                })?;
                eprintln!(
                    "signet: warning: checked under the log key the server names ({}); compare \
                     it with the one published for this log, or pass --log-key",
                    named.to_vkey()
                );
                named
            }
        };
        let verified = root
            .verify(&pinned, SystemClock.now_unix(), i64::MAX)
            .map_err(|e| Failure::refused(anyhow!("the server's trust root: {e}")))?;
        match &args.output {
            Some(path) => {
                write_file(path, text.as_bytes()).map_err(Failure::usage)?;
                eprintln!(
                    "signet: trust root for {} written to {}: {} key versions proven in the \
                     checkpoint of size {}",
                    pinned.to_vkey(),
                    path.display(),
                    verified.versions.len(),
                    verified.checkpoint.size
                );
            }
            None => print!("{text}"),
        }
        Ok(())
    })
}

fn parse_root(text: &str) -> Result<TrustRoot, Failure> {
    serde_json::from_str(text)
        .map_err(|e| Failure::refused(anyhow!("the trust root is malformed: {e}")))
}

/// A log key given as a vkey, or a file or URL holding one.
pub async fn load_log_key(source: &str, insecure_http: bool) -> Result<VerifierKey, Failure> {
    let looks_like_location = source.starts_with("http://")
        || source.starts_with("https://")
        || Path::new(source).exists();
    let text = if looks_like_location {
        load_text(source, insecure_http)
            .await
            .map_err(client_failure)?
    } else {
        source.to_string()
    };
    VerifierKey::parse(text.trim()).map_err(|e| Failure::usage(anyhow!("--log-key {source}: {e}")))
}

/// The log key from `source`, or else the server's own (`/v1/log/vkey`): for the signing end,
/// which trusts the server it signs with.
pub async fn log_key_or_servers(
    source: Option<&str>,
    client: &Client,
    insecure_http: bool,
) -> Result<VerifierKey, Failure> {
    match source {
        Some(source) => load_log_key(source, insecure_http).await,
        None => servers_log_key(client).await,
    }
}

/// `GET /v1/log/vkey`.
pub async fn servers_log_key(client: &Client) -> Result<VerifierKey, Failure> {
    let text = client
        .get_text("/v1/log/vkey")
        .await
        .map_err(client_failure)?;
    VerifierKey::parse(text.trim())
        .map_err(|e| Failure::refused(anyhow!("the server's log key: {e}")))
}

/// How a verifier takes a trust root.
pub struct TrustSource<'a> {
    /// A file or URL.
    pub location: &'a str,
    /// A log key pinned apart from the root, which the root must name.
    pub log_key: Option<VerifierKey>,
    /// The oldest checkpoint accepted.
    pub max_age: Duration,
    /// Where the last accepted root is remembered; default: the user's state folder.
    pub state: Option<&'a Path>,
    /// A server to fetch consistency proofs from (default: the root's own URL's server).
    pub server: Option<&'a str>,
    /// Allow plain http:// off loopback.
    pub insecure_http: bool,
}

/// What a verifier remembers of the last trust root it accepted for a log key.
#[derive(Debug, Serialize, Deserialize)]
struct RememberedTrust {
    log_key: String,
    size: u64,
    root: String,
}

/// Loads and checks a trust root: its proofs under the pinned log key, its age, and its
/// consistency with the last root accepted on this machine, which it then replaces.
pub async fn load_trust(source: &TrustSource<'_>) -> Result<VerifiedTrust, Failure> {
    let text = load_text(source.location, source.insecure_http)
        .await
        .map_err(client_failure)?;
    let root = parse_root(&text)?;
    // The root's log key is the pin unless one was given apart from it.
    let pinned = match &source.log_key {
        Some(key) => key.clone(),
        None => VerifierKey::parse(&root.log_key)
            .map_err(|e| Failure::refused(anyhow!("the trust root's log_key: {e}")))?,
    };
    let max_age = i64::try_from(source.max_age.as_secs()).unwrap_or(i64::MAX);
    let verified = root
        .verify(&pinned, SystemClock.now_unix(), max_age)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", source.location)))?;

    let state_path = match source.state {
        Some(path) => Some(path.to_path_buf()),
        None => default_state_path(&pinned),
    };
    let Some(state_path) = state_path else {
        eprintln!(
            "signet: warning: no state folder (set SIGNET_STATE_DIR or HOME): this trust root \
             is not checked against earlier ones"
        );
        return Ok(verified);
    };
    let remembered: Option<RememberedTrust> = match std::fs::read(&state_path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| Failure::usage(anyhow!("{}: {e}", state_path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Failure::usage(anyhow!("{}: {e}", state_path.display()))),
    };
    let checkpoint = &verified.checkpoint;
    if let Some(old) = &remembered {
        let old_root = decode_root(&old.root)
            .ok_or_else(|| Failure::usage(anyhow!("{}: malformed root", state_path.display())))?;
        if checkpoint.size < old.size {
            return Err(Failure::refused(anyhow!(
                "{}: its checkpoint (size {}) is older than the trust root accepted before (size \
                 {}, remembered in {}): fetch a fresh one",
                source.location,
                checkpoint.size,
                old.size,
                state_path.display()
            )));
        }
        if checkpoint.size == old.size && checkpoint.root != old_root {
            return Err(Failure::refused(anyhow!(
                "{}: its checkpoint of size {} has another root than the one accepted before: the \
                 log forked",
                source.location,
                checkpoint.size
            )));
        }
        if checkpoint.size > old.size && old.size > 0 {
            let server = source
                .server
                .map(str::to_string)
                .or_else(|| server_of(source.location))
                .ok_or_else(|| {
                    Failure::refused(anyhow!(
                        "{}: cannot prove it consistent with the trust root accepted before (size \
                         {}) offline: pass --server URL",
                        source.location,
                        old.size
                    ))
                })?;
            prove_consistent(
                &server,
                source.insecure_http,
                old.size,
                &old_root,
                checkpoint.size,
                &checkpoint.root,
            )
            .await?;
        }
    }
    let state = RememberedTrust {
        log_key: pinned.to_vkey(),
        size: checkpoint.size,
        root: STANDARD.encode(checkpoint.root),
    };
    if let Err(e) = serde_json::to_vec_pretty(&state)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| write_file(&state_path, &bytes))
    {
        eprintln!("signet: warning: cannot remember the trust root: {e}");
    }
    Ok(verified)
}

/// Proves that the tree of `to` leaves extends the one of `from`, with a proof from `server`.
pub async fn prove_consistent(
    server: &str,
    insecure_http: bool,
    from: u64,
    from_root: &Hash,
    to: u64,
    to_root: &Hash,
) -> Result<(), Failure> {
    let client = Client::connect(server, insecure_http).map_err(client_failure)?;
    let proof: LogProof = client
        .get_json(&format!("/v1/log/proof/consistency?from={from}&to={to}"))
        .await
        .map_err(client_failure)?;
    let hashes = merkle::decode_hashes(&proof.hashes)
        .ok_or_else(|| Failure::refused(anyhow!("a consistency proof hash is malformed")))?;
    merkle::verify_consistency(from, to, from_root, to_root, &hashes).map_err(|e| {
        Failure::refused(anyhow!(
            "the checkpoint of size {to} is not consistent with the one of size {from} seen \
             before: {}",
            e.0
        ))
    })
}

fn decode_root(text: &str) -> Option<Hash> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

/// The server a `/v1/trust` URL came from.
fn server_of(location: &str) -> Option<String> {
    let base = location.trim_end_matches('/').strip_suffix("/v1/trust")?;
    (base.starts_with("http://") || base.starts_with("https://")).then(|| base.to_string())
}

/// `$SIGNET_STATE_DIR`, `$XDG_STATE_HOME/signet` or `~/.local/state/signet`, one file per log key.
fn default_state_path(log_key: &VerifierKey) -> Option<PathBuf> {
    let folder = std::env::var_os("SIGNET_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("signet")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/signet"))
        })?;
    let digest = Sha256::digest(log_key.to_vkey().as_bytes());
    Some(folder.join(format!("trust-{}.json", hex::encode(&digest[..8]))))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| anyhow!("{}: {e}", parent.display()))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes).map_err(|e| anyhow!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
