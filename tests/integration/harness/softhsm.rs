//! A SoftHSM token in a temporary folder, initialised with `softhsm2-util`.
use std::path::PathBuf;
use std::process::Command;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "4321-test-pin";
pub const SO_PIN: &str = "8765-test-so-pin";
pub const LABEL: &str = "signet";

/// A token of its own for one test.
pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

impl SoftHsm {
    /// Creates the folder, config and token; panics (failing the test) when SoftHSM is missing.
    pub fn new() -> SoftHsm {
        assert!(
            std::path::Path::new(MODULE).is_file(),
            "SoftHSM is not installed ({MODULE} missing): run scripts/test.sh, which installs softhsm2"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).expect("token dir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let status = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                LABEL,
                "--pin",
                PIN,
                "--so-pin",
                SO_PIN,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("softhsm2-util runs (install softhsm2)");
        assert!(status.success(), "softhsm2-util --init-token failed");
        SoftHsm { dir, conf }
    }

    /// Runs `pkcs11-tool` (OpenSC) against this token, logged in, and returns stdout.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Vec<u8> {
        let output = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                MODULE,
                "--token-label",
                LABEL,
                "--login",
                "--pin",
                PIN,
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool runs (install opensc)");
        assert!(
            output.status.success(),
            "pkcs11-tool {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}
