//! `signet log checkpoint|verify|prove`: check the log from outside, with nothing but the
//! server's public endpoints and its JWKS. A failed check exits 1 and names the index or size.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::{Failure, client_failure, runtime};
use crate::client::{Client, LogEntry, LogProof, load_jwks};
use crate::jwks::JwkSet;
use crate::log::checkpoint::{Checkpoint, verify_checkpoint};
use crate::log::merkle::{self, Hash, RootBuilder};

/// `signet log` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Fetch the latest checkpoint, verify its signature against the JWKS and print it.
    Checkpoint(LogArgs),
    /// Verify the checkpoint, its consistency with the one remembered in --state (trust on first
    /// use), and with --full recompute the whole tree from the entries.
    Verify {
        #[command(flatten)]
        args: LogArgs,
        /// File remembering the last verified checkpoint (created on first use).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Also fetch every entry and recompute the tree.
        #[arg(long)]
        full: bool,
    },
    /// Prove that entry INDEX is in the log, against the latest signed checkpoint.
    Prove {
        #[command(flatten)]
        args: LogArgs,
        /// The entry's index (a signature's `log_index`).
        #[arg(long)]
        index: u64,
        /// How long to wait for a checkpoint that covers the entry.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

/// Options every `log` subcommand takes.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The signet server, e.g. http://127.0.0.1:8420.
    #[arg(long)]
    server: String,
    /// JWKS URL or file holding the log key; default: the server's own.
    #[arg(long)]
    jwks: Option<String>,
    /// The expected checkpoint origin; default: whatever the checkpoint says (or the state file).
    #[arg(long)]
    origin: Option<String>,
}

/// The remembered checkpoint of `signet log verify --state`.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    origin: String,
    size: u64,
    root: String,
}

/// Runs a `log` subcommand.
pub fn run(command: LogCommand) -> Result<(), Failure> {
    runtime()?.block_on(async move {
        match command {
            LogCommand::Checkpoint(args) => {
                let (note, checkpoint, _) = fetch_checkpoint(&args, None).await?;
                print!("{note}");
                eprintln!(
                    "checkpoint verified: {} entries, signed by {}",
                    checkpoint.size, checkpoint.origin
                );
                Ok(())
            }
            LogCommand::Verify { args, state, full } => verify(&args, state.as_deref(), full).await,
            LogCommand::Prove { args, index, wait } => prove(&args, index, wait).await,
        }
    })
}

async fn fetch_checkpoint(
    args: &LogArgs,
    origin: Option<&str>,
) -> Result<(String, Checkpoint, Client), Failure> {
    let client = Client::new(&args.server).map_err(client_failure)?;
    let jwks: JwkSet = match &args.jwks {
        Some(source) => load_jwks(source).await.map_err(client_failure)?,
        None => client.jwks().await.map_err(client_failure)?,
    };
    let note = client
        .get_text("/v1/log/checkpoint")
        .await
        .map_err(client_failure)?;
    let origin = args.origin.as_deref().or(origin);
    let checkpoint = verify_checkpoint(&note, origin, &jwks)
        .map_err(|e| Failure::refused(anyhow!("checkpoint from {}: {e}", args.server)))?;
    Ok((note, checkpoint, client))
}

fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, Failure> {
    merkle::decode_hashes(hashes)
        .ok_or_else(|| Failure::refused(anyhow!("a proof hash is not base64 of 32 bytes")))
}

async fn verify(args: &LogArgs, state_path: Option<&Path>, full: bool) -> Result<(), Failure> {
    let remembered: Option<State> = match state_path {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))?,
            )
        }
        _ => None,
    };
    let (_, checkpoint, client) =
        fetch_checkpoint(args, remembered.as_ref().map(|s| s.origin.as_str())).await?;
    let size = checkpoint.size;

    if let Some(old) = &remembered {
        let old_root: Hash = STANDARD
            .decode(&old.root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| Failure::usage(anyhow!("state file: root is not base64 of 32 bytes")))?;
        if size < old.size {
            return Err(Failure::refused(anyhow!(
                "the log shrank: checkpoint of size {size} after the remembered size {}",
                old.size
            )));
        }
        if old.size > 0 {
            let proof: LogProof = client
                .get_json(&format!(
                    "/v1/log/proof/consistency?from={}&to={size}",
                    old.size
                ))
                .await
                .map_err(|e| {
                    Failure::refused(anyhow!(
                        "consistency of size {} with size {size}: {e}",
                        old.size
                    ))
                })?;
            merkle::verify_consistency(old.size, size, &old_root, &checkpoint.root, &decode_hashes(&proof.hashes)?)
                .map_err(|e| {
                    Failure::refused(anyhow!(
                        "checkpoint of size {size} is not consistent with the remembered checkpoint of size {}: {e}",
                        old.size
                    ))
                })?;
        }
    }

    if full {
        let mut builder = RootBuilder::default();
        let mut leaf_hashes = Vec::new();
        let mut start = 0;
        while start < size {
            let end = (start + 1000).min(size);
            let entries: Vec<LogEntry> = client
                .get_json(&format!("/v1/log/entries?start={start}&end={end}"))
                .await
                .map_err(|e| Failure::refused(anyhow!("entries {start}..{end}: {e}")))?;
            for (expected, entry) in (start..end).zip(entries.iter()) {
                if entry.index != expected {
                    return Err(Failure::refused(anyhow!("entry {expected} is missing")));
                }
                let leaf = STANDARD.decode(&entry.leaf_input).map_err(|_| {
                    Failure::refused(anyhow!("entry {expected}: leaf_input is not base64"))
                })?;
                let hash = merkle::leaf_hash(&leaf);
                if STANDARD.encode(hash) != entry.leaf_hash {
                    return Err(Failure::refused(anyhow!(
                        "entry {expected}: leaf_hash does not match its content"
                    )));
                }
                builder.push(hash);
                leaf_hashes.push(hash);
            }
            if (entries.len() as u64) < end - start {
                return Err(Failure::refused(anyhow!(
                    "entry {} is missing",
                    start + entries.len() as u64
                )));
            }
            start = end;
        }
        if builder.root() != checkpoint.root {
            // Name the first entry that the signed root does not vouch for.
            for (index, hash) in leaf_hashes.iter().enumerate() {
                let proof: Result<LogProof, _> = client
                    .get_json(&format!(
                        "/v1/log/proof/inclusion?index={index}&tree_size={size}"
                    ))
                    .await;
                let included = match proof {
                    Ok(proof) => decode_hashes(&proof.hashes).is_ok_and(|hashes| {
                        merkle::verify_inclusion(
                            index as u64,
                            size,
                            hash,
                            &hashes,
                            &checkpoint.root,
                        )
                        .is_ok()
                    }),
                    Err(_) => false,
                };
                if !included {
                    return Err(Failure::refused(anyhow!(
                        "entry {index} does not match the signed checkpoint of size {size}"
                    )));
                }
            }
            return Err(Failure::refused(anyhow!(
                "the entries do not hash to the signed root of size {size}"
            )));
        }
    }

    if let Some(path) = state_path {
        let state = State {
            origin: checkpoint.origin.clone(),
            size,
            root: STANDARD.encode(checkpoint.root),
        };
        write_state(path, &state).map_err(Failure::usage)?;
    }
    let mut summary = format!("log verified: {size} entries, origin {}", checkpoint.origin);
    if let Some(old) = remembered {
        summary.push_str(&format!(
            ", consistent with the remembered checkpoint of size {}",
            old.size
        ));
    } else if state_path.is_some() {
        summary.push_str(", remembered (trust on first use)");
    }
    if full {
        summary.push_str(", every entry rehashed");
    }
    println!("{summary}");
    Ok(())
}

fn write_state(path: &Path, state: &State) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text + "\n").map_err(|e| anyhow!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

async fn prove(args: &LogArgs, index: u64, wait: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + wait;
    let (checkpoint, client) = loop {
        let (_, checkpoint, client) = fetch_checkpoint(args, None).await?;
        if index < checkpoint.size {
            break (checkpoint, client);
        }
        if Instant::now() >= deadline {
            return Err(Failure::refused(anyhow!(
                "entry {index} is not covered by the latest checkpoint (size {})",
                checkpoint.size
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let size = checkpoint.size;
    let entry: LogEntry = client
        .get_json(&format!("/v1/log/entries/{index}"))
        .await
        .map_err(|e| Failure::refused(anyhow!("entry {index}: {e}")))?;
    let leaf = STANDARD
        .decode(&entry.leaf_input)
        .map_err(|_| Failure::refused(anyhow!("entry {index}: leaf_input is not base64")))?;
    let hash = merkle::leaf_hash(&leaf);
    let proof: LogProof = client
        .get_json(&format!(
            "/v1/log/proof/inclusion?index={index}&tree_size={size}"
        ))
        .await
        .map_err(|e| Failure::refused(anyhow!("inclusion of entry {index}: {e}")))?;
    merkle::verify_inclusion(
        index,
        size,
        &hash,
        &decode_hashes(&proof.hashes)?,
        &checkpoint.root,
    )
    .map_err(|e| {
        Failure::refused(anyhow!(
            "entry {index} is not included in the checkpoint of size {size}: {e}"
        ))
    })?;
    println!("{}", String::from_utf8_lossy(&leaf));
    eprintln!("entry {index} is included in the signed checkpoint of size {size}");
    Ok(())
}
