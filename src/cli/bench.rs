//! `signet bench signet|vault|pkcs11`: a closed-loop load generator over HTTP/1.1 keep-alive
//! (signet's API, or Vault Transit for comparison), and the raw PKCS#11 `C_Sign` floor.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde_json::{Value, json};

use super::{Failure, runtime};
use crate::algorithm::Algorithm;
mod load;

use crate::id_token::TokenSource;
use load::{Report, closed_loop, report};

/// `signet bench` targets.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// signet's full signing path: sessions first, then `POST /v1/sign` in a closed loop.
    Signet(SignetArgs),
    /// Vault / OpenBao Transit `sign` (prehashed, asn1), for comparison.
    Vault(VaultArgs),
    /// Raw PKCS#11 `C_Sign` on threads, no HTTP: the floor.
    Pkcs11(Pkcs11Args),
    /// A plain `GET` (e.g. signet's `/healthz`): the HTTP round trip alone, with the same client.
    Http(HttpArgs),
}

/// Load shape, for every target.
#[derive(Debug, Args)]
pub struct Load {
    /// Requests in flight (workers of the closed loop; threads for pkcs11).
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// How long to run.
    #[arg(long, short = 'd', default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `signet bench signet` options.
#[derive(Debug, Args)]
pub struct SignetArgs {
    /// The signet server.
    #[arg(long)]
    server: String,
    /// The key.
    #[arg(long, default_value = "model-signing")]
    key: String,
    /// OIDC ID token file (default: SIGNET_ID_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Sessions opened before the run; requests use them round-robin (each has the policy's
    /// quota, so sessions × quota bounds the signatures of a run).
    #[arg(long, default_value_t = 64)]
    sessions: usize,
    /// Digests per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[command(flatten)]
    load: Load,
}

/// `signet bench vault` options.
#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Vault's address.
    #[arg(long)]
    address: String,
    /// Environment variable holding the token.
    #[arg(long, default_value = "VAULT_TOKEN")]
    token_env: String,
    /// Transit mount.
    #[arg(long, default_value = "transit")]
    mount: String,
    /// An ecdsa-p256 Transit key.
    #[arg(long)]
    key: String,
    #[command(flatten)]
    load: Load,
}

/// `signet bench http` options.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The URL to GET; any 2xx answer counts.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: Load,
}

/// `signet bench pkcs11` options.
#[derive(Debug, Args)]
pub struct Pkcs11Args {
    /// The PKCS#11 module.
    #[arg(long)]
    module: PathBuf,
    /// The token's label.
    #[arg(long)]
    token_label: String,
    /// Environment variable holding the user PIN.
    #[arg(long)]
    pin_env: String,
    /// `CKA_LABEL` of an existing private key.
    #[arg(long)]
    key_label: String,
    /// ES256 (CKM_ECDSA) or PS256 (CKM_RSA_PKCS_PSS, SHA-256, salt 32).
    #[arg(long, default_value = "ES256")]
    algorithm: Algorithm,
    #[command(flatten)]
    load: Load,
}

/// Runs a `bench` target.
pub fn run(command: BenchCommand) -> Result<(), Failure> {
    let (report, json) = match command {
        BenchCommand::Signet(args) => {
            let json = args.load.json;
            (runtime()?.block_on(bench_signet(args))?, json)
        }
        BenchCommand::Vault(args) => {
            let json = args.load.json;
            (runtime()?.block_on(bench_vault(args))?, json)
        }
        BenchCommand::Pkcs11(args) => {
            let json = args.load.json;
            (bench_pkcs11(args)?, json)
        }
        BenchCommand::Http(args) => {
            let json = args.load.json;
            (runtime()?.block_on(bench_http(args))?, json)
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(Failure::usage)?
        );
    } else {
        println!(
            "c={} {:.0} req/s ({:.0} ops/s), p50 {} µs, p90 {} µs, p99 {} µs, max {} µs, {} errors{}",
            report.concurrency,
            report.requests_per_second,
            report.operations_per_second,
            report.p50_us,
            report.p90_us,
            report.p99_us,
            report.max_us,
            report.errors,
            report
                .first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Random digests, made before the run so the loop measures the server, not the generator.
fn digests(count: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..count)
            .map(|_| hex::encode(rand::random::<[u8; 32]>()))
            .collect(),
    )
}

fn http_client(concurrency: usize) -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(Failure::usage)
}

/// Sends one request and reads the whole answer; an error names the status and body.
async fn answered(request: reqwest::RequestBuilder) -> Result<(), String> {
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
    }
}

async fn bench_signet(args: SignetArgs) -> Result<Report, Failure> {
    let source = TokenSource::detect(args.token_file.clone(), "signet").map_err(Failure::usage)?;
    let id_token = source.token().await.map_err(Failure::usage)?;
    let http = http_client(args.load.concurrency)?;
    let base = args.server.trim_end_matches('/').to_string();
    let mut sessions = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions.max(1) {
        let answer: Value = http
            .post(format!("{base}/v1/sessions"))
            .bearer_auth(id_token.as_str())
            .json(&json!({"keys": [args.key], "max_signatures": 1_000_000, "ttl_seconds": 3600}))
            .send()
            .await
            .map_err(Failure::usage)?
            .json()
            .await
            .map_err(Failure::usage)?;
        let token = answer["session_token"]
            .as_str()
            .ok_or_else(|| Failure::refused(anyhow!("no session: {answer}")))?;
        sessions.push(token.to_string());
    }
    let sessions = Arc::new(sessions);
    // Requests go round-robin over the sessions, so each session's quota is spent evenly.
    let next_session = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pool = digests(4096);
    let (url, key, batch) = (
        format!("{base}/v1/sign"),
        args.key.clone(),
        args.batch.max(1),
    );
    let report = closed_loop(
        args.load.concurrency,
        args.load.duration,
        batch as u64,
        move |_worker| {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            let turn = next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let session = sessions[turn % sessions.len()].clone();
            let start = rand::random::<usize>() % pool.len();
            let chosen: Vec<String> = (0..batch)
                .map(|i| format!("sha256:{}", pool[(start + i) % pool.len()]))
                .collect();
            async move {
                let body = if chosen.len() == 1 {
                    json!({"key": key, "digest": chosen[0]})
                } else {
                    json!({"key": key, "digests": chosen})
                };
                answered(http.post(url).bearer_auth(session).json(&body)).await
            }
        },
    )
    .await;
    Ok(report)
}

async fn bench_http(args: HttpArgs) -> Result<Report, Failure> {
    let http = http_client(args.load.concurrency)?;
    let url = args.url;
    Ok(
        closed_loop(args.load.concurrency, args.load.duration, 1, move |_| {
            let (http, url) = (http.clone(), url.clone());
            async move { answered(http.get(url)).await }
        })
        .await,
    )
}

async fn bench_vault(args: VaultArgs) -> Result<Report, Failure> {
    let token = std::env::var(&args.token_env)
        .map_err(|_| Failure::usage(anyhow!("{} is not set", args.token_env)))?;
    let http = http_client(args.load.concurrency)?;
    let url = format!(
        "{}/v1/{}/sign/{}/sha2-256",
        args.address.trim_end_matches('/'),
        args.mount,
        args.key
    );
    let pool = digests(4096);
    let report = closed_loop(args.load.concurrency, args.load.duration, 1, move |_| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let digest = hex::decode(&pool[rand::random::<usize>() % pool.len()]).unwrap_or_default();
        async move {
            let body = json!({
                "input": STANDARD.encode(digest),
                "prehashed": true,
                "marshaling_algorithm": "asn1",
            });
            answered(http.post(url).header("X-Vault-Token", token).json(&body)).await
        }
    })
    .await;
    Ok(report)
}

fn bench_pkcs11(args: Pkcs11Args) -> Result<Report, Failure> {
    let fail = |e: cryptoki::error::Error| Failure::usage(anyhow!("PKCS#11: {e}"));
    let pin = std::env::var(&args.pin_env)
        .map_err(|_| Failure::usage(anyhow!("{} is not set", args.pin_env)))?;
    let ctx = Pkcs11::new(&args.module).map_err(fail)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(fail)?;
    let slot = ctx
        .get_slots_with_token()
        .map_err(fail)?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == args.token_label)
        })
        .ok_or_else(|| Failure::usage(anyhow!("no token {:?}", args.token_label)))?;
    let threads = args.load.concurrency.max(1);
    let deadline = Instant::now() + args.load.duration;
    let started = Instant::now();
    let outcomes: Vec<Result<Vec<u64>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (ctx, pin, label) = (&ctx, &pin, &args.key_label);
                scope.spawn(move || -> Result<Vec<u64>, String> {
                    let session = ctx.open_rw_session(slot).map_err(|e| e.to_string())?;
                    // Login state is per token: the first thread logs in, others find it done.
                    match session.login(UserType::User, Some(&AuthPin::new(pin.clone().into()))) {
                        Ok(())
                        | Err(cryptoki::error::Error::Pkcs11(
                            cryptoki::error::RvError::UserAlreadyLoggedIn,
                            _,
                        )) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                    let key = session
                        .find_objects(&[
                            Attribute::Class(ObjectClass::PRIVATE_KEY),
                            Attribute::Label(label.as_bytes().to_vec()),
                        ])
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .next()
                        .ok_or("no private key with that label")?;
                    let mechanism = match args.algorithm {
                        Algorithm::PS256 => Mechanism::RsaPkcsPss(PkcsPssParams {
                            hash_alg: MechanismType::SHA256,
                            mgf: PkcsMgfType::MGF1_SHA256,
                            s_len: 32.into(),
                        }),
                        _ => Mechanism::Ecdsa,
                    };
                    let digest = [7u8; 32];
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        session
                            .sign(&mechanism, key, &digest)
                            .map_err(|e| e.to_string())?;
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                    Ok(latencies)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let mut latencies = Vec::new();
    for outcome in outcomes {
        latencies.extend(outcome.map_err(|e| Failure::usage(anyhow!("PKCS#11: {e}")))?);
    }
    Ok(report(threads, latencies, 0, None, started.elapsed(), 1))
}
