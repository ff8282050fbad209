//! `signet manifest MODEL_PATH`: write the model's manifest as canonical JSON.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::Failure;
use crate::manifest::{Provenance, build};

/// `signet manifest` options.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The model: a file or a directory.
    pub model: PathBuf,
    /// Write the manifest here instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// The training dataset's identifier.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The training dataset's digest, sha256:<hex>.
    #[arg(long)]
    pub dataset_digest: Option<String>,
    /// The training image, pinned by digest (sha256:<hex> or name@sha256:<hex>).
    #[arg(long)]
    pub image: Option<String>,
    /// The training code's git commit; default: HEAD of the model's work tree, if clean.
    #[arg(long)]
    pub git_commit: Option<String>,
    /// A free parameter, KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
}

/// Runs `signet manifest`.
pub fn run(args: ManifestArgs) -> Result<(), Failure> {
    let mut parameters = BTreeMap::new();
    for param in &args.params {
        let (key, value) = param
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Failure::usage(anyhow!("--param must be KEY=VALUE, got {param:?}")))?;
        if parameters
            .insert(key.to_string(), value.to_string())
            .is_some()
        {
            return Err(Failure::usage(anyhow!("--param {key} is given twice")));
        }
    }
    let provenance = Provenance {
        git_commit: args.git_commit,
        dataset_id: args.dataset,
        dataset_digest: args.dataset_digest,
        training_image: args.image,
        parameters,
    };
    let skip: Vec<PathBuf> = args.output.iter().cloned().collect();
    let manifest = build(&args.model, &provenance, &skip).map_err(Failure::usage)?;
    let mut json = manifest.to_canonical_json().map_err(Failure::usage)?;
    json.push(b'\n');
    match &args.output {
        Some(path) => std::fs::write(path, &json)
            .map_err(|e| Failure::usage(anyhow!("cannot write {}: {e}", path.display())))?,
        None => std::io::stdout()
            .write_all(&json)
            .map_err(|e| Failure::usage(anyhow!("cannot write the manifest: {e}")))?,
    }
    eprintln!("signet: manifest of {} files", manifest.files.len());
    Ok(())
}
