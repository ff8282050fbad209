//! `signet log checkpoint|verify|prove`: check the log from outside, with nothing but the
//! server's public endpoints and a pinned log key (`--log-key`, `--trust`, or the one the state
//! file remembers; first use without one needs `--trust-on-first-use`). A failed check exits 1
//! and names the index or size.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::trust::{load_log_key, servers_log_key, write_file};
use super::{Failure, client_failure, runtime};
use crate::checkpoint::{Checkpoint, verify_checkpoint};
use crate::client::{Client, LogEntry, LogProof, load_text};
use crate::merkle::{self, Hash, RootBuilder};
use crate::note::VerifierKey;
use crate::trust::TrustRoot;

/// `signet log` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Fetch the latest checkpoint, verify it under the pinned log key and print it.
    Checkpoint(LogArgs),
    /// Verify the checkpoint, its consistency with the one remembered in --state, and with
    /// --full recompute the whole tree from the entries.
    Verify {
        #[command(flatten)]
        args: LogArgs,
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
    /// The signet server, e.g. https://signet.example.
    #[arg(long)]
    server: String,
    /// The pinned log key: a vkey (origin+id+key), or a file or URL holding one.
    #[arg(long, value_name = "VKEY_OR_FILE", conflicts_with = "trust")]
    log_key: Option<String>,
    /// Pin the log key that this trust root (`signet trust`, a file or URL) names.
    #[arg(long, value_name = "FILE_OR_URL")]
    trust: Option<String>,
    /// With no pin given or remembered, take the server's own log key (and remember it in
    /// --state): only when you can check it some other way.
    #[arg(long)]
    trust_on_first_use: bool,
    /// File remembering the pinned log key and the last verified checkpoint.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    insecure_http: bool,
}

/// What `--state` remembers: the pinned log key and the last verified checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    origin: String,
    /// Absent in state files written before log keys were pinned.
    #[serde(default)]
    log_key: Option<String>,
    size: u64,
    root: String,
}

/// Runs a `log` subcommand.
pub fn run(command: LogCommand) -> Result<(), Failure> {
    runtime()?.block_on(async move {
        match command {
            LogCommand::Checkpoint(args) => {
                let pinned = Pinned::resolve(&args).await?;
                let (note, checkpoint) = fetch_checkpoint(&pinned).await?;
                pinned.remember_first(&args, &checkpoint)?;
                print!("{note}");
                eprintln!(
                    "checkpoint verified under {}: {} entries",
                    pinned.log_key.to_vkey(),
                    checkpoint.size
                );
                Ok(())
            }
            LogCommand::Verify { args, full } => verify(&args, full).await,
            LogCommand::Prove { args, index, wait } => prove(&args, index, wait).await,
        }
    })
}

/// The server, the pinned log key and what the state file remembers.
struct Pinned {
    client: Client,
    log_key: VerifierKey,
    remembered: Option<State>,
}

impl Pinned {
    async fn resolve(args: &LogArgs) -> Result<Pinned, Failure> {
        let client = Client::connect(&args.server, args.insecure_http).map_err(client_failure)?;
        let remembered: Option<State> = match &args.state {
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
        let remembered_key = match remembered.as_ref().and_then(|s| s.log_key.as_deref()) {
            Some(vkey) => Some(
                VerifierKey::parse(vkey)
                    .map_err(|e| Failure::usage(anyhow!("state file: log_key: {e}")))?,
            ),
            None => None,
        };
        let given = match (&args.log_key, &args.trust) {
            (Some(source), _) => Some(load_log_key(source, args.insecure_http).await?),
            (None, Some(location)) => {
                let text = load_text(location, args.insecure_http)
                    .await
                    .map_err(client_failure)?;
                let root: TrustRoot = serde_json::from_str(&text)
                    .map_err(|e| Failure::refused(anyhow!("{location}: {e}")))?;
                let key = VerifierKey::parse(&root.log_key)
                    .map_err(|e| Failure::refused(anyhow!("{location}: log_key: {e}")))?;
                // The root must at least be signed by the key it names.
                verify_checkpoint(&root.checkpoint, &key)
                    .map_err(|e| Failure::refused(anyhow!("{location}: {e}")))?;
                Some(key)
            }
            (None, None) => None,
        };
        let log_key = match (given, remembered_key) {
            (Some(given), Some(remembered)) if given != remembered => {
                return Err(Failure::refused(anyhow!(
                    "the state file pins log key {}, not {}: a new log key is a new log",
                    remembered.to_vkey(),
                    given.to_vkey()
                )));
            }
            (Some(given), _) => given,
            (None, Some(remembered)) => remembered,
            (None, None) if args.trust_on_first_use => {
                let key = servers_log_key(&client).await?;
                eprintln!(
                    "signet: warning: trusting the server's log key on first use: {}",
                    key.to_vkey()
                );
                key
            }
            (None, None) => {
                return Err(Failure::usage(anyhow!(
                    "no log key is pinned: pass --log-key VKEY or --trust FILE (or \
                     --trust-on-first-use to take the server's own, remembered in --state)"
                )));
            }
        };
        Ok(Pinned {
            client,
            log_key,
            remembered,
        })
    }

    /// Writes a state file that pins the key when there was none. An existing one is left to
    /// `signet log verify`, which proves the new checkpoint consistent with it first.
    fn remember_first(&self, args: &LogArgs, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let Some(path) = &args.state else {
            return Ok(());
        };
        if self.remembered.is_some() {
            return Ok(());
        }
        let state = State {
            origin: checkpoint.origin.clone(),
            log_key: Some(self.log_key.to_vkey()),
            size: checkpoint.size,
            root: STANDARD.encode(checkpoint.root),
        };
        write_state(path, &state).map_err(Failure::usage)
    }
}

async fn fetch_checkpoint(pinned: &Pinned) -> Result<(String, Checkpoint), Failure> {
    let note = pinned
        .client
        .get_text("/v1/log/checkpoint")
        .await
        .map_err(client_failure)?;
    let checkpoint = verify_checkpoint(&note, &pinned.log_key)
        .map_err(|e| Failure::refused(anyhow!("checkpoint from {}: {e}", pinned.client.url(""))))?;
    Ok((note, checkpoint))
}

fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, Failure> {
    merkle::decode_hashes(hashes)
        .ok_or_else(|| Failure::refused(anyhow!("a proof hash is not base64 of 32 bytes")))
}

async fn verify(args: &LogArgs, full: bool) -> Result<(), Failure> {
    let pinned = Pinned::resolve(args).await?;
    let state_path = args.state.as_deref();
    let (_, checkpoint) = fetch_checkpoint(&pinned).await?;
    let client = &pinned.client;
    let remembered = pinned.remembered.as_ref();
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
            log_key: Some(pinned.log_key.to_vkey()),
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
        summary.push_str(", remembered with its log key");
    }
    if full {
        summary.push_str(", every entry rehashed");
    }
    println!("{summary}");
    Ok(())
}

fn write_state(path: &Path, state: &State) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)? + "\n";
    write_file(path, text.as_bytes())
}

async fn prove(args: &LogArgs, index: u64, wait: Duration) -> Result<(), Failure> {
    let pinned = Pinned::resolve(args).await?;
    let client = &pinned.client;
    let deadline = Instant::now() + wait;
    let checkpoint = loop {
        let (_, checkpoint) = fetch_checkpoint(&pinned).await?;
        if index < checkpoint.size {
            pinned.remember_first(args, &checkpoint)?;
            break checkpoint;
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
