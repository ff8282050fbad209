//! `signet manifest MODEL_PATH`: write the model's manifest as canonical JSON.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::Failure;
use crate::manifest::{Provenance, build_with_progress};

/// `signet manifest` options.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The model: a file or a directory.
    pub model: PathBuf,
    /// Write the manifest here instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Provenance recorded in the manifest.
    #[command(flatten)]
    pub provenance: ProvenanceArgs,
}

/// What the caller states about the build (shared by `manifest` and `sign`).
#[derive(Debug, Args)]
pub struct ProvenanceArgs {
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

impl ProvenanceArgs {
    /// The provenance, after checking the parameters' form.
    pub fn to_provenance(&self) -> Result<Provenance, Failure> {
        let mut parameters = BTreeMap::new();
        for param in &self.params {
            let (key, value) = param
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    Failure::usage(anyhow!("--param must be KEY=VALUE, got {param:?}"))
                })?;
            if parameters
                .insert(key.to_string(), value.to_string())
                .is_some()
            {
                return Err(Failure::usage(anyhow!("--param {key} is given twice")));
            }
        }
        Ok(Provenance {
            git_commit: self.git_commit.clone(),
            dataset_id: self.dataset.clone(),
            dataset_digest: self.dataset_digest.clone(),
            training_image: self.image.clone(),
            parameters,
        })
    }
}

/// Runs `signet manifest`.
pub fn run(args: ManifestArgs) -> Result<(), Failure> {
    let provenance = args.provenance.to_provenance()?;
    let skip: Vec<PathBuf> = args.output.iter().cloned().collect();
    let progress = super::progress::HashBar::new("hashing");
    let manifest =
        build_with_progress(&args.model, &provenance, &skip, &progress).map_err(Failure::usage)?;
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
