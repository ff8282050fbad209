//! `signet sessions revoke --server URL (--subject SUB | --policy NAME | --all)`: an
//! administrator ends live signing sessions; each stops working on its next request.
use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Failure, client_failure, runtime};
use crate::client::Client;
use crate::id_token::TokenSource;

/// `signet sessions` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// End live sessions by subject, policy or all (an admin of every key they may use).
    Revoke(RevokeArgs),
}

/// `signet sessions revoke` options.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The signet server.
    #[arg(long)]
    server: String,
    /// End every session of this subject (`sub`).
    #[arg(long, conflicts_with_all = ["policy", "all"])]
    subject: Option<String>,
    /// End every session granted by this policy.
    #[arg(long, conflicts_with = "all")]
    policy: Option<String>,
    /// End every session.
    #[arg(long)]
    all: bool,
    /// Why, for the log.
    #[arg(long)]
    reason: Option<String>,
    /// Read the admin's OIDC ID token from this file (default: SIGNET_ID_TOKEN, then the CI's).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// The audience to ask the CI's issuer for.
    #[arg(long, default_value = "signet")]
    audience: String,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    insecure_http: bool,
}

/// Runs a `sessions` subcommand.
pub fn run(command: SessionsCommand) -> Result<(), Failure> {
    let SessionsCommand::Revoke(args) = command;
    runtime()?.block_on(async {
        let source =
            TokenSource::detect(args.token_file.clone(), &args.audience).map_err(Failure::usage)?;
        let token = source.token().await.map_err(Failure::usage)?;
        let client = Client::connect(&args.server, args.insecure_http).map_err(client_failure)?;
        let mut body =
            json!({"reason": args.reason.unwrap_or_else(|| "revoked by an administrator".into())});
        match (args.subject, args.policy, args.all) {
            (Some(subject), _, _) => body["subject"] = json!(subject),
            (None, Some(policy), _) => body["policy"] = json!(policy),
            (None, None, true) => body["all"] = json!(true),
            (None, None, false) => {
                return Err(Failure::usage(anyhow!("give --subject, --policy or --all")));
            }
        }
        let answer: Value = client
            .post_json("/v1/sessions/revoke", &token, &body)
            .await
            .map_err(client_failure)?;
        println!("revoked {} live sessions", answer["revoked"]);
        Ok(())
    })
}
