//! `signet witness serve|keygen`: a C2SP tlog-witness for a security team to run apart from the
//! signet operator, and the key it cosigns with.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Subcommand;

use super::{Failure, runtime};
use crate::clock::SystemClock;
use crate::witness::config::WitnessConfig;
use crate::witness::store::WitnessStore;
use crate::witness::{MAX_REQUEST_BYTES, Witness, WitnessError};

/// `signet witness` subcommands.
#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Serve `POST /add-checkpoint` for the logs in the config.
    Serve {
        /// The witness config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Make the witness's Ed25519 key (PKCS#8 PEM, readable by its owner only) and print its
    /// vkey, which log operators put in `[[log.witnesses]]`.
    Keygen {
        /// The witness's name, e.g. witness.security.example.
        #[arg(long)]
        name: String,
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// Runs a `witness` subcommand.
pub fn run(command: WitnessCommand) -> Result<(), Failure> {
    match command {
        WitnessCommand::Serve { config } => runtime()?.block_on(serve(&config)),
        WitnessCommand::Keygen { name, key_file } => keygen(&name, &key_file),
    }
}

fn keygen(name: &str, key_file: &Path) -> Result<(), Failure> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use std::io::Write;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let cosigner = crate::cosignature::Cosigner::new(name, key.clone()).map_err(Failure::usage)?;
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| Failure::usage(anyhow!("cannot encode the key: {e}")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(key_file)
        .with_context(|| format!("cannot create {}", key_file.display()))
        .map_err(Failure::usage)?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", key_file.display()))
        .map_err(Failure::usage)?;
    println!("{}", cosigner.key().to_vkey());
    Ok(())
}

async fn serve(path: &Path) -> Result<(), Failure> {
    let config = WitnessConfig::load(path).map_err(Failure::usage)?;
    let cosigner = config.cosigner().map_err(Failure::usage)?;
    let store = WitnessStore::open(&config.state).map_err(Failure::usage)?;
    let vkey = cosigner.key().to_vkey();
    let witness = Arc::new(Witness::new(
        cosigner,
        config.logs.clone(),
        store,
        Arc::new(SystemClock),
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))
        .map_err(Failure::usage)?;
    let address = listener.local_addr().map_err(Failure::usage)?;
    // Scripts and tests read this line to learn the port when listening on port 0.
    println!("signet witness listening on http://{address}");
    tracing::info!(%address, vkey = %vkey, logs = config.logs.len(), "witness listening");
    let router = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(witness);
    axum::serve(listener, router)
        .with_graceful_shutdown(super::serve::shutdown_signal())
        .await
        .context("witness server failed")
        .map_err(Failure::usage)
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n").into_response();
    };
    match witness.add_checkpoint(body).await {
        Ok(cosignature) => (StatusCode::OK, cosignature).into_response(),
        Err(error) => {
            tracing::info!(error = %error, "checkpoint not cosigned");
            refusal(&error)
        }
    }
}

/// The spec's answer to each refusal.
fn refusal(error: &WitnessError) -> Response {
    let status = match error {
        WitnessError::BadRequest(_) => StatusCode::BAD_REQUEST,
        WitnessError::UnknownLog(_) => StatusCode::NOT_FOUND,
        WitnessError::NotSigned => StatusCode::FORBIDDEN,
        WitnessError::Conflict(size) => {
            let mut response = (StatusCode::CONFLICT, format!("{size}\n")).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/x.tlog.size"),
            );
            return response;
        }
        WitnessError::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        WitnessError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = match error {
        WitnessError::Store(_) => "the witness could not record the checkpoint\n".to_string(),
        other => format!("{other}\n"),
    };
    (status, text).into_response()
}
