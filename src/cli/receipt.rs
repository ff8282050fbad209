//! `signet receipt refresh DIR --server URL`: re-proves a receipt's log entries against the
//! log's latest checkpoint, e.g. for a receipt made before the log key was pinned (its
//! checkpoint was signed by the old key), or one whose checkpoint a verifier finds too old.
//! The entries themselves must be unchanged: the log's leaves must equal the receipt's.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{Failure, client_failure, runtime};
use crate::checkpoint::{Checkpoint, verify_checkpoint};
use crate::client::{Client, LogEntry, LogProof};
use crate::note::VerifierKey;
use crate::receipt::{LoggedSignature, ProvenEntry, Receipt};

/// `signet receipt` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Re-prove the receipt in DIR against the server's latest checkpoint.
    Refresh(RefreshArgs),
}

/// `signet receipt refresh` options.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The folder holding `signet-receipt.json` (the model directory, or --out-dir of sign).
    pub dir: PathBuf,
    /// The signet server.
    #[arg(long)]
    pub server: String,
    /// The log key to check the checkpoint under (a vkey, or a file or URL holding one);
    /// default: the server's own.
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub log_key: Option<String>,
    /// How long to wait for a checkpoint covering the entries.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    pub insecure_http: bool,
}

/// Runs a `receipt` subcommand.
pub fn run(command: ReceiptCommand) -> Result<(), Failure> {
    let ReceiptCommand::Refresh(args) = command;
    let path = args.dir.join("signet-receipt.json");
    let bytes =
        std::fs::read(&path).map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))?;
    let mut receipt: Receipt = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", path.display())))?;
    runtime()?.block_on(async {
        let client = Client::connect(&args.server, args.insecure_http).map_err(client_failure)?;
        let log_key =
            super::trust::log_key_or_servers(args.log_key.as_deref(), &client, args.insecure_http)
                .await?;
        let indices = [
            receipt.manifest_signature.log_index,
            receipt.model_sig.log_index,
        ];
        let (note, checkpoint, proven) =
            prove_in_checkpoint(&client, &log_key, &indices, args.wait).await?;
        let mut proven: Vec<LoggedSignature> = proven.into_iter().map(|(entry, _)| entry).collect();
        for (old, new) in [&receipt.manifest_signature, &receipt.model_sig]
            .into_iter()
            .zip(&proven)
        {
            if old.leaf_input != new.leaf_input {
                return Err(Failure::refused(anyhow!(
                    "log entry {} differs from the receipt's: the log or the receipt was changed",
                    old.log_index
                )));
            }
        }
        receipt.model_sig = proven
            .pop()
            .ok_or_else(|| Failure::usage(anyhow!("two entries")))?;
        receipt.manifest_signature = proven
            .pop()
            .ok_or_else(|| Failure::usage(anyhow!("two entries")))?;
        receipt.checkpoint = note;
        let receipt = receipt.with_tlog_proofs().map_err(Failure::usage)?;
        let json = serde_json::to_vec_pretty(&receipt).map_err(Failure::usage)?;
        super::trust::write_file(&path, &json).map_err(Failure::usage)?;
        eprintln!(
            "signet: {} re-proven in the checkpoint of size {} under {}",
            path.display(),
            checkpoint.size,
            log_key.to_vkey()
        );
        Ok(())
    })
}

/// Waits up to `wait` for a checkpoint under `log_key` that covers `indices`, then fetches each
/// entry and its inclusion proof, checked as a verifier will check them; each comes with its
/// proven event.
pub async fn prove_in_checkpoint(
    client: &Client,
    log_key: &VerifierKey,
    indices: &[u64],
    wait: Duration,
) -> Result<(String, Checkpoint, Vec<(LoggedSignature, ProvenEntry)>), Failure> {
    let needed = indices.iter().max().map_or(0, |i| i + 1);
    let deadline = Instant::now() + wait;
    let (note, checkpoint) = loop {
        let note = client
            .get_text("/v1/log/checkpoint")
            .await
            .map_err(client_failure)?;
        let checkpoint = verify_checkpoint(&note, log_key)
            .map_err(|e| Failure::refused(anyhow!("the server's checkpoint: {e}")))?;
        if checkpoint.size >= needed {
            break (note, checkpoint);
        }
        if Instant::now() >= deadline {
            return Err(Failure::refused(anyhow!(
                "no checkpoint covers log entry {} after {}",
                needed - 1,
                humantime::format_duration(wait)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut logged = Vec::new();
    for &index in indices {
        let entry: LogEntry = client
            .get_json(&format!("/v1/log/entries/{index}"))
            .await
            .map_err(client_failure)?;
        let proof: LogProof = client
            .get_json(&format!(
                "/v1/log/proof/inclusion?index={index}&tree_size={}",
                checkpoint.size
            ))
            .await
            .map_err(client_failure)?;
        let entry = LoggedSignature {
            log_index: index,
            leaf_input: entry.leaf_input,
            inclusion_proof: proof.hashes,
            tlog_proof: None,
        };
        let proven = entry
            .prove(&checkpoint)
            .map_err(|e| Failure::refused(anyhow!("the server's log: {e}")))?;
        logged.push((entry, proven));
    }
    Ok((note, checkpoint, logged))
}
