//! The manifest: the walk, hashing against sha256sum-like references, provenance checks.
use super::hash::*;
use super::walk::Pending;
use super::*;

fn write(dir: &Path, path: &str, content: &[u8]) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(full, content).expect("write");
}

#[test]
fn large_files_hashed_in_pairs_match_sha2() {
    // Sizes around the paired-hashing threshold and the map window (whole MiB, 8 MiB with
    // 2 threads), so that lanes end at different times and are refilled from the queue;
    // which files end up paired depends on the threads' timing. The padding cases
    // themselves are covered in the `sha256-lanes` crate.
    let dir = tempfile::tempdir().expect("tempdir");
    let sizes = [
        PAIRED_MIN as usize - 1,
        PAIRED_MIN as usize,
        PAIRED_MIN as usize + 55,
        9 * MIB + 63,
        17 * MIB + 64,
        5 * MIB + 1,
        12 * MIB,
        3,
    ];
    let mut expected = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let content: Vec<u8> = (0..*size)
            .map(|n| (n as u8).wrapping_mul(7) ^ (n >> 12) as u8 ^ i as u8)
            .collect();
        let name = format!("shard-{i}.bin");
        write(dir.path(), &name, &content);
        expected.push((
            name,
            format!("sha256:{}", hex::encode(Sha256::digest(&content))),
        ));
    }
    let manifest = build(dir.path(), &Provenance::default(), &[]).expect("manifest");
    let got: Vec<(String, String)> = manifest
        .files
        .into_iter()
        .map(|f| (f.path, f.digest))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_file_whose_size_changed_after_the_walk_is_an_error() {
    // The manifest must never pair one size with another content's digest.
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, size) in [("small.bin", 10usize), ("large.bin", PAIRED_MIN as usize)] {
        write(dir.path(), name, &vec![1u8; size]);
        let listed = Pending {
            source: dir.path().join(name),
            path: name.to_string(),
            size: size as u64 + 1,
        };
        let outcome = if size < PAIRED_MIN as usize {
            read_and_hash(&listed.source, listed.size, &mut [0u8; 64], &())
        } else {
            MappedFile::open(0, &listed, MIB).map(|_| String::new())
        };
        assert!(
            matches!(outcome, Err(ManifestError::Changed { listed: l, hashed: h, .. }) if l == size as u64 + 1 && h == size as u64),
            "{name}: {outcome:?}"
        );
    }
}

#[test]
fn walks_in_byte_order_and_leaves_out_git_and_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "b.bin", b"b");
    write(dir.path(), "a/z.bin", b"z");
    write(dir.path(), "B.bin", b"B");
    write(dir.path(), "a/.git/config", b"x");
    write(dir.path(), ".git/HEAD", b"x");
    write(dir.path(), "manifest.json", b"{}");
    write(dir.path(), "model.sig", b"x");
    write(
        dir.path(),
        "sub/manifest.json",
        b"kept: only the top level holds outputs",
    );
    let manifest = build(dir.path(), &Provenance::default(), &[]).expect("manifest");
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["B.bin", "a/z.bin", "b.bin", "sub/manifest.json"]);
    let b = &manifest.files[2];
    assert_eq!(b.size, 1);
    assert_eq!(
        b.digest,
        format!("sha256:{}", hex::encode(Sha256::digest(b"b")))
    );
}

#[test]
fn symlinks_inside_are_followed_and_outside_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "weights.bin", b"w");
    std::os::unix::fs::symlink(dir.path().join("weights.bin"), dir.path().join("alias.bin"))
        .expect("link");
    let manifest = build(dir.path(), &Provenance::default(), &[]).expect("inside is fine");
    assert_eq!(manifest.files.len(), 2);
    assert_eq!(manifest.files[0].digest, manifest.files[1].digest);
    write(outside.path(), "secret", b"s");
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("escape"))
        .expect("link");
    assert!(matches!(
        build(dir.path(), &Provenance::default(), &[]),
        Err(ManifestError::SymlinkEscapes { .. })
    ));
}

#[test]
fn dangling_links_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling")).expect("link");
    assert!(build(dir.path(), &Provenance::default(), &[]).is_err());
}

#[test]
fn image_must_be_pinned_by_digest() {
    let digest = format!("sha256:{}", "a".repeat(64));
    assert!(check_image_digest(&digest).is_ok());
    assert!(check_image_digest(&format!("ghcr.io/acme/train@{digest}")).is_ok());
    assert!(check_image_digest("ghcr.io/acme/train:latest").is_err());
    assert!(check_image_digest("sha256:abc").is_err());
    assert!(check_git_commit(&"A".repeat(40)).is_ok());
    assert!(check_git_commit("main").is_err());
}

#[test]
fn canonical_json_is_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "w.bin", b"weights");
    let provenance = Provenance {
        git_commit: Some("0".repeat(40)),
        dataset_id: Some("imagenet-2012".into()),
        dataset_digest: Some(format!("sha256:{}", "1".repeat(64))),
        training_image: Some(format!("sha256:{}", "2".repeat(64))),
        parameters: [("lr".to_string(), "0.001".to_string())]
            .into_iter()
            .collect(),
    };
    let manifest = build(dir.path(), &provenance, &[]).expect("manifest");
    let text = String::from_utf8(manifest.to_canonical_json().expect("json")).expect("utf8");
    assert!(
        text.starts_with(r#"{"dataset":{"digest":"sha256:1111"#),
        "{text}"
    );
    assert!(text.contains(r#""files":[{"digest":"sha256:"#), "{text}");
    assert!(!text.contains(' ') && !text.contains('\n'));
    let back: Manifest = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, manifest);
}
