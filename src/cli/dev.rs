//! `signet dev`: a self-contained local daemon for trying signet out. A SoftHSM token in a local
//! folder (created on first run, reused later), a development OIDC issuer on loopback, a policy
//! that lets its tokens sign, and the exact commands to try. Development only.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow};
use clap::Args;
use rand::RngCore;

use super::{Failure, runtime};
use crate::config::Config;
mod issuer;

use issuer::{DEV_AUDIENCE, DevIssuer};

/// Where Debian and others install SoftHSM's PKCS#11 module.
const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];
const TOKEN_LABEL: &str = "signet";

/// `signet dev` options.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Folder for the token, PIN, database and generated config (created if missing).
    #[arg(long, default_value = ".signet-dev")]
    pub dir: PathBuf,
    /// Address of the daemon.
    #[arg(long, default_value = "127.0.0.1:8420")]
    pub listen: SocketAddr,
    /// Address of the development OIDC issuer (loopback only).
    #[arg(long, default_value = "127.0.0.1:8421")]
    pub issuer_listen: SocketAddr,
}

/// Runs `signet dev`.
pub fn run(args: DevArgs) -> Result<(), Failure> {
    if !args.listen.ip().is_loopback() || !args.issuer_listen.ip().is_loopback() {
        return Err(Failure::usage(anyhow!(
            "signet dev listens on loopback addresses only"
        )));
    }
    let module = SOFTHSM_MODULES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "SoftHSM is not installed (scripts/dev.sh installs it: apt-get install softhsm2)"
            ))
        })?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))
        .map_err(Failure::usage)?;
    let dir = std::path::absolute(&args.dir).map_err(Failure::usage)?;
    let softhsm_conf = prepare_token(&dir).map_err(Failure::usage)?;
    // SAFETY: SoftHSM reads its config path from the environment at C_Initialize. This runs
    // before any other thread exists (the runtime is built below), so changing the environment
    // is sound.
    #[allow(unsafe_code)]
    let () = unsafe { std::env::set_var("SOFTHSM2_CONF", &softhsm_conf) };

    runtime()?.block_on(async move {
        let issuer = DevIssuer::start(args.issuer_listen)
            .await
            .map_err(Failure::usage)?;
        let config_text = dev_config(&dir, module, &issuer.url, args.listen);
        let config_path = dir.join("signet.toml");
        std::fs::write(&config_path, &config_text)
            .with_context(|| format!("cannot write {}", config_path.display()))
            .map_err(Failure::usage)?;
        let config = Config::from_toml(&config_text, &config_path).map_err(Failure::usage)?;
        let (app, listener) = super::serve::start(config, crate::app::Mode::Development).await?;
        let address = listener.local_addr().map_err(Failure::usage)?;
        print_walkthrough(&issuer.url, &format!("http://{address}"), &dir);
        super::serve::serve(app, listener).await
    })
}

/// Creates the token folder, PINs and SoftHSM config on first run; returns the config's path.
fn prepare_token(dir: &Path) -> anyhow::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)
        .with_context(|| format!("cannot create {}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .with_context(|| format!("cannot write {}", conf.display()))?;
    let pin = read_or_create_secret(&dir.join("pin"))?;
    let so_pin = read_or_create_secret(&dir.join("so-pin"))?;
    let initialized = std::fs::read_dir(&tokens)
        .with_context(|| format!("cannot read {}", tokens.display()))?
        .next()
        .is_some();
    if !initialized {
        let status = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN_LABEL,
                "--pin",
                &pin,
                "--so-pin",
                &so_pin,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run softhsm2-util (install softhsm2)")?;
        if !status.success() {
            return Err(anyhow!("softhsm2-util --init-token failed ({status})"));
        }
    }
    Ok(conf)
}

/// Reads a PIN file, or creates one with a random PIN readable by the owner only.
fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim().to_string();
        if !text.is_empty() {
            return Ok(text);
        }
    }
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(secret)
}

fn dev_config(dir: &Path, module: &Path, issuer_url: &str, listen: SocketAddr) -> String {
    let toml_str = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        r#"# Generated by `signet dev` on every start. Development only: its issuer mints tokens for anyone.
[server]
listen = {listen}

[store]
url = {store}

[log]
origin = "signet.dev.local/log"
key = "log-signing"

[[issuers]]
name = "dev"
issuer = {issuer}
audiences = [{audience}]
jwks_refetch_cooldown = "1s"

[backends.hsm]
type = "pkcs11"
module = {module}
token_label = "{TOKEN_LABEL}"
pin_file = {pin}

[[keys]]
name = "model-signing"
backend = "hsm"
algorithm = "ES256"

[[keys]]
name = "log-signing"
backend = "hsm"
algorithm = "EdDSA"

[[policies]]
name = "dev-signers"
issuer = "dev"
claims = {{ repository = "dev/*" }}
keys = ["model-signing"]
max_ttl = "1h"
max_signatures = 1000
"#,
        listen = toml_str(&listen.to_string()),
        store = toml_str(&format!("sqlite://{}", dir.join("signet.db").display())),
        issuer = toml_str(issuer_url),
        audience = toml_str(DEV_AUDIENCE),
        module = toml_str(&module.display().to_string()),
        pin = toml_str(&dir.join("pin").display().to_string()),
    )
}

fn print_walkthrough(issuer: &str, server: &str, dir: &Path) {
    let signet = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "signet".to_string());
    println!(
        r#"
signet dev is running. DEVELOPMENT ONLY: its OIDC issuer mints tokens for anyone on this machine,
and `signet serve` refuses it.
  daemon:  {server}
  issuer:  {issuer}
  state:   {dir} (SoftHSM token, PIN, database, generated signet.toml)

In another terminal, sign a file and verify the signature with OpenSSL:

  # 1. an ID token from the development issuer (claims of a CI job for dev/models)
  TOKEN=$(curl -sf -X POST {issuer}/token)
  # 2. a short-lived signing session
  SESSION=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" {server}/v1/sessions \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_token"])')
  # 3. sign the SHA-256 of a file
  echo 'hello model' > model.bin
  DIGEST=sha256:$(sha256sum model.bin | cut -d' ' -f1)
  curl -sf -X POST -H "Authorization: Bearer $SESSION" -H 'Content-Type: application/json' \
    -d "{{\"key\":\"model-signing\",\"digest\":\"$DIGEST\"}}" {server}/v1/sign > sign.json
  python3 -c 'import json,base64; s=json.load(open("sign.json"))["signatures"][0]; open("model.bin.sig","wb").write(base64.b64decode(s["signature"])); print(s["key_id"])' > kid.txt
  # 4. the public key from the JWKS, and an independent check
  {signet} keys pem --jwks {server}/.well-known/jwks.json --kid "$(cat kid.txt)" > pub.pem
  openssl dgst -sha256 -verify pub.pem -signature model.bin.sig model.bin
  # 5. pin the log key (a verifier gets it from whoever runs the log, never from the material
  #    it checks), fetch the trust root (every key version, proven in the log), then prove the
  #    signature's log entry and check the whole log (the state file remembers it)
  curl -sf {server}/v1/log/vkey > log.vkey
  {signet} trust --server {server} --log-key log.vkey -o trust.json
  {signet} log prove --server {server} --trust trust.json --index "$(python3 -c 'import json; print(json.load(open("sign.json"))["signatures"][0]["log_index"])')"
  {signet} log verify --server {server} --trust trust.json --state log-state.json --full
  # 6. what CI and deployment run: sign a model directory, then verify it (files, signatures,
  #    log inclusion under the pinned key, and who signed it)
  mkdir -p my-model && echo 'weights' > my-model/model.safetensors && echo '{{}}' > my-model/config.json
  curl -sf -X POST {issuer}/token > id-token
  {signet} sign my-model --server {server} --key model-signing --token-file id-token
  {signet} verify my-model --trust trust.json --identity repository=dev/models

Stop with Ctrl-C."#,
        dir = dir.display()
    );
}
