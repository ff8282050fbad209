//! A real OpenBao server (Vault's API) on free loopback ports, with Raft storage in a temporary
//! folder so that it can be stopped and started again with its keys: initialised and unsealed
//! with one key share, Transit mounted at `transit`. Installed by scripts/install-backends.sh.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `bao` binary; `SIGNET_TEST_BAO` overrides it.
fn bao() -> String {
    std::env::var("SIGNET_TEST_BAO").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/openbao-venv/bin/bao").to_string()
    })
}

/// A running (or stopped) OpenBao.
pub struct OpenBao {
    pub url: String,
    pub root_token: String,
    unseal_key: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl OpenBao {
    /// Starts, initialises, unseals and mounts Transit; panics (failing the test) if OpenBao is
    /// not installed or does not come up.
    pub async fn start() -> OpenBao {
        let binary = bao();
        assert!(
            std::path::Path::new(&binary).exists(),
            "OpenBao is not installed ({binary} missing): run scripts/test.sh, which installs it"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, cluster_port) = (free_port(), free_port());
        std::fs::create_dir_all(dir.path().join("raft")).expect("raft dir");
        std::fs::write(
            dir.path().join("bao.hcl"),
            format!(
                r#"storage "raft" {{
  path = "{raft}"
  node_id = "signet-test"
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
"#,
                raft = dir.path().join("raft").display()
            ),
        )
        .expect("bao.hcl");
        let mut bao = OpenBao {
            url: format!("http://127.0.0.1:{port}"),
            root_token: String::new(),
            unseal_key: String::new(),
            dir,
            child: None,
            http: reqwest::Client::new(),
        };
        bao.spawn().await;
        let init: Value = bao
            .http
            .put(format!("{}/v1/sys/init", bao.url))
            .json(&json!({"secret_shares": 1, "secret_threshold": 1}))
            .send()
            .await
            .expect("init")
            .json()
            .await
            .expect("init answer");
        bao.unseal_key = init["keys"][0].as_str().expect("unseal key").to_string();
        bao.root_token = init["root_token"].as_str().expect("root token").to_string();
        bao.unseal().await;
        let mounted = bao
            .http
            .post(format!("{}/v1/sys/mounts/transit", bao.url))
            .header("X-Vault-Token", &bao.root_token)
            .json(&json!({"type": "transit"}))
            .send()
            .await
            .expect("mount transit");
        assert!(
            mounted.status().is_success(),
            "mount transit: {}",
            mounted.status()
        );
        bao
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("bao.log")).expect("log");
        let child = Command::new(bao())
            .arg("server")
            .arg(format!(
                "-config={}",
                self.dir.path().join("bao.hcl").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start bao");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .http
            .get(format!("{}/v1/sys/health", self.url))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "OpenBao did not start: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn unseal(&self) {
        self.http
            .put(format!("{}/v1/sys/unseal", self.url))
            .json(&json!({"key": self.unseal_key}))
            .send()
            .await
            .expect("unseal");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self
                .http
                .get(format!("{}/v1/sys/health", self.url))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if status.is_ok_and(|s| s == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not become active: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and unseals it.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
        self.unseal().await;
    }

    /// A token with `policies`, for `ttl`, renewable or not.
    pub async fn token_with(&self, policies: &[&str], ttl: &str, renewable: bool) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/v1/auth/token/create", self.url))
            .header("X-Vault-Token", &self.root_token)
            .json(&json!({"policies": policies, "ttl": ttl, "renewable": renewable}))
            .send()
            .await
            .expect("token create")
            .json()
            .await
            .expect("token answer");
        answer["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_string()
    }

    /// Writes an ACL policy.
    pub async fn policy(&self, name: &str, hcl: &str) {
        let written = self
            .http
            .put(format!("{}/v1/sys/policies/acl/{name}", self.url))
            .header("X-Vault-Token", &self.root_token)
            .json(&json!({"policy": hcl}))
            .send()
            .await
            .expect("policy");
        assert!(
            written.status().is_success(),
            "policy: {}",
            written.status()
        );
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}
