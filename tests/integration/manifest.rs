//! `signet manifest`: digests match `sha256sum`, outputs are left out, git HEAD is recorded only
//! for a clean work tree, and an image tag instead of a digest is refused.
use std::process::Command;

use serde_json::Value;

fn signet(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run signet");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sha256sum(path: &std::path::Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split(' ')
        .next()
        .expect("hash")
        .to_string()
}

fn model(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("weights")).expect("mkdir");
    // Two large files, hashed as a pair with their rounds interleaved when one thread takes both
    // (each alone otherwise). The first is larger than a map window (at most 16 MiB), so it is
    // hashed across window offsets; both end in a partial block. Small files take the read path.
    let big: Vec<u8> = (0..20 * 1024 * 1024u32 + 7)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(dir.join("weights/model-00001.safetensors"), &big).expect("write");
    std::fs::write(dir.join("weights/model-00002.safetensors"), b"second shard").expect("write");
    let large: Vec<u8> = (0..6 * 1024 * 1024u32 + 13)
        .map(|i| (i % 241) as u8)
        .collect();
    std::fs::write(dir.join("weights/model-00003.safetensors"), &large).expect("write");
    std::fs::write(dir.join("config.json"), b"{\"layers\": 2}").expect("write");
    std::fs::write(dir.join("empty"), b"").expect("write");
    std::fs::create_dir_all(dir.join("tokenizer")).expect("mkdir");
    std::fs::write(dir.join("tokenizer/vocab é 1.json"), b"{}").expect("write");
}

#[test]
fn digests_match_sha256sum_and_outputs_are_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    model(dir.path());
    let image = format!("ghcr.io/acme/trainer@sha256:{}", "c".repeat(64));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let (code, _, stderr) = signet(
        &[
            "manifest",
            ".",
            "-o",
            "manifest.json",
            "--image",
            &image,
            "--git-commit",
            commit,
            "--dataset",
            "acme/corpus-v3",
            "--param",
            "lr=0.001",
            "--param",
            "epochs=3",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("read"))
            .expect("json");
    let files = manifest["files"].as_array().expect("files");
    let paths: Vec<&str> = files
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        [
            "config.json",
            "empty",
            "tokenizer/vocab é 1.json",
            "weights/model-00001.safetensors",
            "weights/model-00002.safetensors",
            "weights/model-00003.safetensors"
        ]
    );
    for file in files {
        let on_disk = dir.path().join(file["path"].as_str().expect("path"));
        assert_eq!(
            file["digest"],
            format!("sha256:{}", sha256sum(&on_disk)),
            "{}",
            file["path"]
        );
        assert_eq!(
            file["size"].as_u64(),
            Some(std::fs::metadata(&on_disk).expect("meta").len())
        );
    }
    assert_eq!(manifest["git_commit"], commit);
    assert_eq!(manifest["training_image"], Value::String(image));
    assert_eq!(manifest["dataset"]["id"], "acme/corpus-v3");
    assert_eq!(manifest["parameters"]["epochs"], "3");
    assert_eq!(manifest["tool"]["name"], "signet");
    // Running again over the directory that now holds manifest.json gives the same bytes.
    let first = std::fs::read(dir.path().join("manifest.json")).expect("read");
    let (code, stdout, _) = signet(
        &[
            "manifest",
            ".",
            "--image",
            &format!("ghcr.io/acme/trainer@sha256:{}", "c".repeat(64)),
            "--git-commit",
            commit,
            "--dataset",
            "acme/corpus-v3",
            "--param",
            "epochs=3",
            "--param",
            "lr=0.001",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert_eq!(
        stdout.as_bytes(),
        first.as_slice(),
        "deterministic, canonical output"
    );
}

#[test]
fn an_image_tag_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    model(dir.path());
    let (code, _, stderr) = signet(
        &["manifest", ".", "--image", "ghcr.io/acme/trainer:latest"],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("pinned by digest"), "{stderr}");
}

#[test]
fn git_head_is_recorded_only_for_a_clean_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    model(dir.path());
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(
            status.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        String::from_utf8_lossy(&status.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "model"]);
    let head = git(&["rev-parse", "HEAD"]);
    let (code, stdout, _) = signet(&["manifest", "."], dir.path());
    assert_eq!(code, 0);
    let manifest: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(manifest["git_commit"], Value::String(head));
    std::fs::write(dir.path().join("config.json"), b"changed").expect("write");
    let (code, stdout, stderr) = signet(&["manifest", "."], dir.path());
    assert_eq!(code, 0);
    assert!(stderr.contains("uncommitted changes"), "{stderr}");
    let manifest: Value = serde_json::from_str(&stdout).expect("json");
    assert!(manifest.get("git_commit").is_none());
}

#[test]
fn a_symlink_leaving_the_model_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    model(dir.path());
    std::fs::write(outside.path().join("secret"), b"s").expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        dir.path().join("weights/linked.bin"),
    )
    .expect("symlink");
    let (code, _, stderr) = signet(&["manifest", "."], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("weights/linked.bin is a symlink that leaves the model directory"),
        "{stderr}"
    );
}
