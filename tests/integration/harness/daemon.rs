//! The `signet` binary run as a daemon on a free port, with its own config, store and token.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use signet::app::{App, AppState, Mode};
use signet::clock::{Clock, ManualClock};

use super::softhsm::{self, SoftHsm};

/// How long a daemon may take to start before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A key in the test config.
#[derive(Clone)]
pub struct TestKey {
    pub name: String,
    pub algorithm: String,
    pub backend_key: Option<String>,
    /// The `[backends.NAME]` holding it.
    pub backend: String,
    /// More lines for its `[[keys]]` table (grace_period, rotation_period).
    pub extra: String,
}

/// The daemon's config, rendered to TOML.
#[derive(Clone)]
pub struct DaemonConfig {
    pub issuer_url: String,
    pub store_path: PathBuf,
    pub keys: Vec<TestKey>,
    pub policy_keys: Vec<String>,
    pub policy_claims: String,
    pub max_ttl: String,
    pub max_signatures: u64,
    pub refetch_cooldown: String,
    pub jwks_max_age: String,
    pub request_timeout: String,
    pub extra: String,
    /// Environment variables for the daemon (backend credentials).
    pub env: Vec<(String, String)>,
    /// The SoftHSM token's label and the line giving its PIN.
    pub token_label: String,
    pub pin_line: String,
}

impl DaemonConfig {
    /// ES256 `model-signing` and EdDSA `log-signing`; a `release` policy for acme/models on main.
    pub fn new(hsm: &SoftHsm, issuer_url: &str) -> DaemonConfig {
        DaemonConfig {
            issuer_url: issuer_url.to_string(),
            store_path: hsm.dir.path().join("signet.db"),
            keys: vec![
                TestKey {
                    name: "model-signing".into(),
                    algorithm: "ES256".into(),
                    backend_key: None,
                    backend: "hsm".into(),
                    extra: String::new(),
                },
                TestKey {
                    name: "log-signing".into(),
                    algorithm: "EdDSA".into(),
                    backend_key: None,
                    backend: "hsm".into(),
                    extra: String::new(),
                },
            ],
            policy_keys: vec!["model-signing".into()],
            policy_claims: r#"{ repository = "acme/models", ref = "refs/heads/main" }"#.into(),
            max_ttl: "15m".into(),
            max_signatures: 100,
            refetch_cooldown: "60s".into(),
            jwks_max_age: "1h".into(),
            request_timeout: "30s".into(),
            extra: String::new(),
            env: Vec::new(),
            token_label: hsm.label.clone(),
            pin_line: hsm.pin_line(),
        }
    }

    /// Adds a key the policy grants.
    pub fn add_key(&mut self, name: &str, algorithm: &str) {
        self.add_key_on(name, algorithm, "hsm");
    }

    /// Extra `[[keys]]` lines for the key named `name`.
    pub fn key_lines(&mut self, name: &str, lines: &str) {
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.name == name)
            .expect("key in the config");
        key.extra.push_str(lines);
        key.extra.push('\n');
    }

    /// An admin policy: tokens of `repository` may rotate and retire `keys`.
    pub fn add_admin_policy(&mut self, repository: &str, keys: &[&str]) {
        self.extra.push_str(&format!(
            "\n[[policies]]\nname = \"key-admins-{}\"\nissuer = \"ci\"\nclaims = {{ repository = \"{repository}\" }}\nkeys = {}\nrole = \"admin\"\n",
            repository.replace('/', "-"),
            serde_json::to_string(keys).expect("keys")
        ));
    }

    /// Adds a key the policy grants, held by the backend named `backend`.
    pub fn add_key_on(&mut self, name: &str, algorithm: &str, backend: &str) {
        self.keys.push(TestKey {
            name: name.into(),
            algorithm: algorithm.into(),
            backend_key: None,
            backend: backend.into(),
            extra: String::new(),
        });
        self.policy_keys.push(name.into());
    }

    pub fn render(&self) -> String {
        let mut text = format!(
            r#"[server]
listen = "127.0.0.1:0"
request_timeout = "{request_timeout}"
shutdown_timeout = "20s"

[store]
url = "sqlite://{store}"

[log]
origin = "signet.test/log"
key = "log-signing"

[[issuers]]
name = "ci"
issuer = "{issuer}"
audiences = ["signet"]
jwks_refetch_cooldown = "{cooldown}"
jwks_max_age = "{max_age}"

[backends.hsm]
type = "pkcs11"
module = "{module}"
token_label = "{label}"
{pin_line}
timeout = "20s"

[[policies]]
name = "release"
issuer = "ci"
claims = {claims}
keys = {keys}
max_ttl = "{max_ttl}"
max_signatures = {max_signatures}
"#,
            request_timeout = self.request_timeout,
            store = self.store_path.display(),
            issuer = self.issuer_url,
            cooldown = self.refetch_cooldown,
            max_age = self.jwks_max_age,
            module = softhsm::MODULE,
            label = self.token_label,
            pin_line = self.pin_line,
            claims = self.policy_claims,
            keys = serde_json::to_string(&self.policy_keys).expect("keys"),
            max_ttl = self.max_ttl,
            max_signatures = self.max_signatures,
        );
        for key in &self.keys {
            text.push_str(&format!(
                "\n[[keys]]\nname = \"{}\"\nbackend = \"{}\"\nalgorithm = \"{}\"\n",
                key.name, key.backend, key.algorithm
            ));
            if let Some(label) = &key.backend_key {
                text.push_str(&format!("backend_key = \"{label}\"\n"));
            }
            text.push_str(&key.extra);
        }
        text.push_str(&self.extra);
        text
    }
}

/// A running daemon; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub base_url: String,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    child: Option<Child>,
    /// Set for a daemon started in the test process.
    in_process: Option<InProcess>,
}

/// A daemon built with `App::start` in the test process, on a clock the test moves.
struct InProcess {
    clock: Arc<ManualClock>,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Writes the config next to the token and starts `signet serve`.
    pub async fn start(hsm: &SoftHsm, config: &DaemonConfig) -> Daemon {
        let config_path = hsm
            .dir
            .path()
            .join(format!("signet-{}.toml", rand::random::<u32>()));
        std::fs::write(&config_path, config.render()).expect("write config");
        // The environment travels with the config file, so restarts get it too.
        let env: serde_json::Map<String, serde_json::Value> = config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        std::fs::write(
            config_path.with_extension("env.json"),
            serde_json::Value::Object(env).to_string(),
        )
        .expect("write env");
        Daemon::start_with_config_file(hsm, config_path)
            .await
            .unwrap_or_else(|stderr| panic!("daemon did not start:\n{stderr}"))
    }

    /// Starts `signet serve` on an existing config; Err(stderr) if it exits instead.
    pub async fn start_with_config_file(
        hsm: &SoftHsm,
        config_path: PathBuf,
    ) -> Result<Daemon, String> {
        let stderr_path = config_path.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let env: serde_json::Map<String, serde_json::Value> =
            std::fs::read_to_string(config_path.with_extension("env.json"))
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
        let mut command = Command::new(env!("CARGO_BIN_EXE_signet"));
        for (name, value) in &env {
            command.env(name, value.as_str().unwrap_or_default());
        }
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env("SIGNET_TEST_HSM_PIN", softhsm::PIN)
            .env("SIGNET_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn signet");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("signet listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let started = Instant::now();
        loop {
            if let Ok(url) = rx.try_recv() {
                return Ok(Daemon {
                    base_url: url,
                    config_path,
                    stderr_path,
                    child: Some(child),
                    in_process: None,
                });
            }
            if let Ok(Some(_)) = child.try_wait() {
                return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
            }
            if started.elapsed() > START_DEADLINE {
                let _ = child.kill();
                return Err(format!(
                    "no listening line within {START_DEADLINE:?}:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Builds the daemon in this process with `App::start` on `clock` and serves it on a free
    /// loopback port: time-dependent tests advance the clock instead of sleeping. Its logs go
    /// to the test's output, not to [`Daemon::logs`].
    pub async fn start_in_process(
        hsm: &SoftHsm,
        config: &DaemonConfig,
        clock: Arc<ManualClock>,
    ) -> Daemon {
        let config_path = hsm.dir.path().join("signet.toml");
        std::fs::write(&config_path, config.render()).expect("write config");
        Daemon::start_in_process_on(config_path, clock).await
    }

    /// Starts an in-process daemon on an existing config file.
    pub async fn start_in_process_on(config_path: PathBuf, clock: Arc<ManualClock>) -> Daemon {
        let text = std::fs::read_to_string(&config_path).expect("read config");
        let parsed = signet::config::Config::from_toml(&text, &config_path)
            .unwrap_or_else(|e| panic!("config: {e}"));
        let app = App::start(parsed, Arc::clone(&clock) as Arc<dyn Clock>, Mode::Serve)
            .await
            .unwrap_or_else(|e| panic!("the daemon did not start: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = signet::api::router(app.state().clone());
        let state = app.state().clone();
        let served = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let _ = signet::api::serve(listener, router, shutdown, Duration::from_secs(5)).await;
            app.shutdown().await;
        });
        Daemon {
            base_url,
            stderr_path: config_path.with_extension("stderr.log"),
            config_path,
            child: None,
            in_process: Some(InProcess {
                clock,
                state,
                stop: Some(stop),
                served: Some(served),
            }),
        }
    }

    /// Stops an in-process daemon (its server and tasks); returns its config and clock to start
    /// it again with [`Daemon::start_in_process_on`].
    pub async fn stop_in_process(mut self) -> (PathBuf, Arc<ManualClock>) {
        let mut running = self.in_process.take().expect("an in-process daemon");
        if let Some(stop) = running.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = running.served.take() {
            served.await.expect("the in-process daemon stopped cleanly");
        }
        (self.config_path.clone(), Arc::clone(&running.clock))
    }

    /// The state of an in-process daemon, for what no endpoint shows (its sessions).
    pub fn state(&self) -> &AppState {
        &self
            .in_process
            .as_ref()
            .expect("only an in-process daemon shares its state")
            .state
    }

    /// Whether the daemon runs in the test process.
    pub fn is_in_process(&self) -> bool {
        self.in_process.is_some()
    }

    /// The clock of an in-process daemon.
    pub fn clock(&self) -> &ManualClock {
        &self
            .in_process
            .as_ref()
            .expect("only an in-process daemon runs on a manual clock")
            .clock
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("an in-process daemon has no process to signal")
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("an in-process daemon has no process id")
            .id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// SIGTERM, then waits for exit (SIGKILL after a deadline); returns the exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        self.terminate();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child().try_wait() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child().kill();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the daemon gets no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid().to_string()])
            .status();
        let _ = self.child().wait();
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        assert!(
            self.in_process.is_none(),
            "an in-process daemon logs to the test's output"
        );
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.in_process.as_mut().and_then(|d| d.stop.take()) {
            let _ = stop.send(());
        }
        if let Some(child) = self.child.as_mut()
            && let Ok(None) = child.try_wait()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
