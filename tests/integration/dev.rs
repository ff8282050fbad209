//! `signet dev`: its printed walk-through, pasted into bash, yields a signature that
//! `openssl dgst -verify` accepts with the PEM of the JWKS key; and a second start reuses the token.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A running `signet dev`, stopped when dropped, so a failed assertion does not leave it behind.
struct DevDaemon(std::process::Child);

impl Drop for DevDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `signet dev` in `dir` on free ports and returns it and the walk-through text.
fn start_dev(dir: &std::path::Path) -> (DevDaemon, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--issuer-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn signet dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.expect("utf8");
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (DevDaemon(child), text)
}

fn commands_of(walkthrough: &str) -> String {
    let start = walkthrough
        .find("In another terminal")
        .expect("walk-through heading");
    let end = walkthrough
        .find("Stop with Ctrl-C")
        .expect("walk-through end");
    walkthrough[start..end]
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_printed_walkthrough_signs_and_openssl_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, walkthrough) = start_dev(dir.path());
    assert!(walkthrough.contains("DEVELOPMENT ONLY"), "{walkthrough}");
    let script = commands_of(&walkthrough);
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walk-through failed:\n{script}\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Verified OK"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("is included in the signed checkpoint"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("log verified"), "{stdout}\n{stderr}");
    assert!(stdout.contains("verified: 2 files"), "{stdout}\n{stderr}");
    drop(daemon);

    // A second start reuses the token and its keys: same kids.
    let kid = std::fs::read_to_string(dir.path().join("kid.txt")).expect("kid.txt");
    let (daemon, walkthrough) = start_dev(dir.path());
    let server = walkthrough
        .lines()
        .find_map(|l| l.trim().strip_prefix("daemon:"))
        .expect("daemon line")
        .trim()
        .to_string();
    let jwks = Command::new("curl")
        .args(["-sf", &format!("{server}/.well-known/jwks.json")])
        .output()
        .expect("curl");
    drop(daemon);
    assert!(
        String::from_utf8_lossy(&jwks.stdout).contains(kid.trim()),
        "kid changed across restarts"
    );
}
