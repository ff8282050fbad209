//! `signet keys list|pem|rotate|retire|revoke`: inspect keys through the API or a JWKS; rotate,
//! retire and revoke them through the API (an admin's OIDC token) or, break-glass, with
//! `--config` directly on the store and backends.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Failure, client_failure, runtime};
use crate::app::{App, Mode};
use crate::client::Client;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::id_token::TokenSource;
use crate::jwks::{JwkSet, spki_from_jwk, spki_to_pem};
use crate::keys::{KeyContext, KeyRing};
use crate::log::event::Actor;

/// `signet keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every key and version with its state (GET /v1/keys).
    List {
        /// The signet server, e.g. http://127.0.0.1:8420.
        #[arg(long)]
        server: String,
    },
    /// Rotate a key: a new version is created inside the backend and becomes active; the active
    /// one turns verify-only for the key's grace period.
    Rotate {
        /// The key.
        name: String,
        #[command(flatten)]
        target: ChangeTarget,
        /// Why, for the log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Retire a version at once: it leaves the JWKS; what it signed still verifies against a
    /// trust root. For a compromised key use `revoke`. An active version is replaced first.
    Retire {
        /// The key.
        name: String,
        /// The version to retire.
        #[arg(long)]
        version: u32,
        #[command(flatten)]
        target: ChangeTarget,
        /// Why, for the log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke a compromised version (irreversible, logged): signatures it made that were logged
    /// from --compromised-since on stop verifying; earlier ones still verify. An active version
    /// is replaced by a new one first.
    Revoke {
        /// The key.
        name: String,
        /// The version to revoke.
        #[arg(long)]
        version: u32,
        /// From when the key is taken to be compromised (RFC 3339, not in the future).
        #[arg(long, value_name = "RFC3339")]
        compromised_since: String,
        /// Why, for the log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: ChangeTarget,
    },
    /// Print the PEM public key of one JWKS entry, after checking its kid is its thumbprint.
    Pem {
        /// JWKS URL or file.
        #[arg(long)]
        jwks: String,
        /// The kid a signature names. A thumbprint is base64url, so it may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
}

/// Where a key change is made: through a server, or break-glass on the store and backends.
#[derive(Debug, Args)]
pub struct ChangeTarget {
    /// The signet server; the OIDC token (as for `sign`) must match an admin policy.
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    server: Option<String>,
    /// Break-glass: the daemon's config, to work on its store and backends directly. A running
    /// daemon picks the change up within a second.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Read the OIDC ID token from this file (default: SIGNET_ID_TOKEN, then GitHub Actions).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The audience to ask the CI's issuer for.
    #[arg(long, default_value = "signet")]
    audience: String,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    insecure_http: bool,
}

/// Runs a `keys` subcommand.
pub fn run(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::List { server } => runtime()?.block_on(list(&server)),
        KeysCommand::Pem { jwks, kid } => runtime()?.block_on(pem(&jwks, &kid)),
        KeysCommand::Rotate {
            name,
            target,
            reason,
        } => {
            let body =
                json!({"reason": reason.clone().unwrap_or_else(|| "manual rotation".into())});
            runtime()?.block_on(change(&name, "rotate", body, &target, |ring, context| {
                let reason = reason
                    .clone()
                    .unwrap_or_else(|| "break-glass rotation".into());
                let name = name.clone();
                Box::pin(async move {
                    ring.rotate(&name, &Actor::BreakGlass, &reason, context)
                        .await
                })
            }))
        }
        KeysCommand::Retire {
            name,
            version,
            target,
            reason,
        } => {
            let reason = reason.unwrap_or_else(|| "emergency retirement".into());
            let body = json!({"version": version, "reason": reason});
            runtime()?.block_on(change(&name, "retire", body, &target, |ring, context| {
                let reason = reason.clone();
                let name = name.clone();
                Box::pin(async move {
                    ring.retire(&name, version, &Actor::BreakGlass, &reason, context)
                        .await
                })
            }))
        }
        KeysCommand::Revoke {
            name,
            version,
            compromised_since,
            reason,
            target,
        } => {
            let since = crate::clock::parse_rfc3339(&compromised_since).ok_or_else(|| {
                Failure::usage(anyhow!(
                    "--compromised-since must be an RFC 3339 time, like 2026-11-30T08:00:00Z"
                ))
            })?;
            let body = json!({
                "version": version,
                "compromised_since": compromised_since,
                "reason": reason,
            });
            runtime()?.block_on(change(&name, "revoke", body, &target, |ring, context| {
                let reason = reason.clone();
                let name = name.clone();
                Box::pin(async move {
                    ring.revoke(&name, version, since, &Actor::BreakGlass, &reason, context)
                        .await
                })
            }))
        }
    }
}

async fn change<F>(
    name: &str,
    action: &str,
    body: Value,
    target: &ChangeTarget,
    local: F,
) -> Result<(), Failure>
where
    F: for<'a> Fn(
        &'a KeyRing,
        &'a KeyContext<'a>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<crate::store::KeyVersionRecord, crate::keys::KeyError>,
                > + 'a,
        >,
    >,
{
    if let Some(server) = &target.server {
        let source = TokenSource::detect(target.token_file.clone(), &target.audience)
            .map_err(Failure::usage)?;
        let token = source.token().await.map_err(Failure::usage)?;
        let client = Client::connect(server, target.insecure_http).map_err(client_failure)?;
        let answer: Value = client
            .post_json(&format!("/v1/keys/{name}/{action}"), &token, &body)
            .await
            .map_err(client_failure)?;
        println!(
            "{action}: key {name} version {} (kid {}) is {}",
            answer["version"],
            answer["key_id"].as_str().unwrap_or(""),
            answer["state"].as_str().unwrap_or("")
        );
        return Ok(());
    }
    let path = target
        .config
        .as_ref()
        .ok_or_else(|| Failure::usage(anyhow!("give --server URL or --config PATH")))?;
    let config = Config::load(path).map_err(Failure::usage)?;
    let app = App::start(config, Arc::new(SystemClock), Mode::BreakGlass)
        .await
        .map_err(Failure::usage)?;
    let state = app.state();
    let version = local(&state.keys, &state.key_context())
        .await
        .map_err(|e| match e {
            crate::keys::KeyError::Conflict { .. }
            | crate::keys::KeyError::BadVersion { .. }
            | crate::keys::KeyError::LogKey(_) => Failure::refused(e),
            other => Failure::usage(other),
        })?;
    println!(
        "{action} (break-glass): key {name} version {} (kid {}) is {}",
        version.version,
        version.key_id,
        version.state.as_str()
    );
    Ok(())
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
