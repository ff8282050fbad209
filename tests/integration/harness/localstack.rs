//! A real LocalStack (AWS KMS) on a free loopback port, its state in a temporary folder.
//! Installed by scripts/install-backends.sh.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// LocalStack's Python; `SIGNET_TEST_LOCALSTACK_PYTHON` overrides it.
fn python() -> String {
    std::env::var("SIGNET_TEST_LOCALSTACK_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/localstack-venv/bin/python"
        )
        .to_string()
    })
}

/// A running LocalStack with only KMS.
pub struct LocalStack {
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl LocalStack {
    /// Starts it and waits until KMS answers; panics (failing the test) if it is not installed
    /// or does not come up.
    pub async fn start() -> LocalStack {
        // Each start is a heavy Python process: two at a time keep a two-core machine under
        // tests running four at once from starving them all.
        static STARTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let _starting = STARTING.acquire().await.expect("semaphore");
        let python = python();
        assert!(
            std::path::Path::new(&python).exists(),
            "LocalStack is not installed ({python} missing): run scripts/test.sh, which installs it"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        // The service catalog index scripts/install-backends.sh built: without it the first
        // request builds one (seconds, and ~500 MB).
        let catalog_dir = dir.path().join("fs/usr/lib/localstack");
        std::fs::create_dir_all(&catalog_dir).expect("catalog dir");
        let prebuilt = std::path::Path::new(&python)
            .parent()
            .and_then(|bin| bin.parent())
            .map(|venv| venv.join("static-libs"))
            .expect("venv");
        for entry in std::fs::read_dir(&prebuilt).into_iter().flatten().flatten() {
            std::fs::copy(entry.path(), catalog_dir.join(entry.file_name())).expect("copy catalog");
        }
        let log = std::fs::File::create(dir.path().join("localstack.log")).expect("log");
        let child = Command::new(&python)
            .args(["-m", "localstack.runtime.main"])
            .env("SERVICES", "kms")
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("DNS_ADDRESS", "0")
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            // This machine looks like a container (/.dockerenv); without this LocalStack writes
            // under /var/lib/localstack whatever FILESYSTEM_ROOT says.
            .env("OVERRIDE_IN_DOCKER", "0")
            .env("FILESYSTEM_ROOT", dir.path().join("fs"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start LocalStack");
        let localstack = LocalStack {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let health = http
                .get(format!("{}/_localstack/health", localstack.url))
                .send()
                .await;
            if let Ok(answer) = health
                && answer.status().is_success()
                && answer.text().await.unwrap_or_default().contains("\"kms\"")
            {
                return localstack;
            }
            assert!(
                Instant::now() < deadline,
                "LocalStack did not start: {}",
                localstack.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("localstack.log")).unwrap_or_default()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
