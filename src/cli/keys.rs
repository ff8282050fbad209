//! `signet keys list|pem`: inspect keys through the API or a JWKS.
use anyhow::{Context, anyhow};
use clap::Subcommand;

use super::{Failure, runtime};
use crate::jwks::{JwkSet, spki_from_jwk, spki_to_pem};

/// `signet keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every key and version with its state (GET /v1/keys).
    List {
        /// The signet server, e.g. http://127.0.0.1:8420.
        #[arg(long)]
        server: String,
    },
    /// Print the PEM public key of one JWKS entry, after checking its kid is its thumbprint.
    Pem {
        /// JWKS URL or file.
        #[arg(long)]
        jwks: String,
        /// The kid a signature names.
        #[arg(long)]
        kid: String,
    },
}

/// Runs a `keys` subcommand.
pub fn run(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::List { server } => runtime()?.block_on(list(&server)),
        KeysCommand::Pem { jwks, kid } => runtime()?.block_on(pem(&jwks, &kid)),
    }
}

async fn list(server: &str) -> Result<(), Failure> {
    let url = format!("{}/v1/keys", server.trim_end_matches('/'));
    let keys: serde_json::Value = get_json(&url).await?;
    let Some(keys) = keys.as_array() else {
        return Err(Failure::refused(anyhow!("{url}: not a key list")));
    };
    println!(
        "{:<24} {:<6} {:<12} {:>3}  {:<12} KID",
        "KEY", "ALG", "BACKEND", "VER", "STATE"
    );
    for key in keys {
        let text = |k: &serde_json::Value, f: &str| {
            k.get(f).and_then(|v| v.as_str()).unwrap_or("").to_string()
        };
        for version in key
            .get("versions")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            println!(
                "{:<24} {:<6} {:<12} {:>3}  {:<12} {}",
                text(key, "name"),
                text(key, "algorithm"),
                text(key, "backend"),
                version.get("version").and_then(|v| v.as_u64()).unwrap_or(0),
                text(version, "state"),
                text(version, "key_id"),
            );
        }
    }
    Ok(())
}

async fn pem(source: &str, kid: &str) -> Result<(), Failure> {
    let set: JwkSet = if source.starts_with("http://") || source.starts_with("https://") {
        serde_json::from_value(get_json(source).await?)
            .with_context(|| format!("{source}: not a JWKS"))
            .map_err(Failure::refused)?
    } else {
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("cannot read {source}"))
            .map_err(Failure::usage)?;
        serde_json::from_str(&text)
            .with_context(|| format!("{source}: not a JWKS"))
            .map_err(Failure::usage)?
    };
    let jwk = set
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| Failure::refused(anyhow!("no key with kid {kid} in {source}")))?;
    let (_, spki) = spki_from_jwk(jwk)
        .with_context(|| format!("key {kid} in {source}"))
        .map_err(Failure::refused)?;
    print!("{}", spki_to_pem(&spki));
    Ok(())
}

async fn get_json(url: &str) -> Result<serde_json::Value, Failure> {
    let response = reqwest::get(url)
        .await
        .with_context(|| format!("cannot reach {url}"))
        .map_err(Failure::usage)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::refused(anyhow!("{url}: HTTP {status}")));
    }
    response
        .json()
        .await
        .with_context(|| format!("{url}: not JSON"))
        .map_err(Failure::refused)
}
