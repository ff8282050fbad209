//! A SoftHSM token in a temporary folder, initialised with `softhsm2-util`.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "4321-test-pin";
pub const SO_PIN: &str = "8765-test-so-pin";
pub const LABEL: &str = "signet";

/// A token of its own for one test.
pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    /// The token's label (`signet` for a daemon in its own process).
    pub label: String,
    /// Set for a token in the test process's shared SoftHSM: deleted when dropped.
    shared_serial: Option<String>,
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
        SoftHsm {
            dir,
            conf,
            label: LABEL.to_string(),
            shared_serial: None,
        }
    }

    /// A token in the SoftHSM this test process has loaded, for a daemon started in-process.
    /// PKCS#11 is initialised once per process and SoftHSM reads its config path then, so every
    /// in-process token lives under the one `SOFTHSM2_CONF` that `.cargo/config.toml` names, and
    /// is created through the loaded module (tokens made by `softhsm2-util` afterwards would
    /// stay invisible to it).
    pub fn in_process() -> SoftHsm {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        static INIT: Mutex<()> = Mutex::new(());
        let conf = shared_conf();
        let ctx = signet::backend::pkcs11::shared_module(Path::new(MODULE))
            .unwrap_or_else(|e| panic!("SoftHSM: {e}"));
        let label = format!(
            "t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        // One free slot at a time: two tests must not initialise the same one.
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let slot = ctx
            .get_all_slots()
            .expect("C_GetSlotList")
            .into_iter()
            .find(|slot| {
                ctx.get_token_info(*slot)
                    .is_ok_and(|info| !info.token_initialized())
            })
            .expect("SoftHSM offers a free slot");
        ctx.init_token(slot, &AuthPin::new(SO_PIN.into()), &label)
            .expect("C_InitToken");
        let session = ctx.open_rw_session(slot).expect("C_OpenSession");
        session
            .login(UserType::So, Some(&AuthPin::new(SO_PIN.into())))
            .expect("SO login");
        session
            .init_pin(&AuthPin::new(PIN.into()))
            .expect("C_InitPIN");
        drop(session);
        let serial = ctx
            .get_token_info(slot)
            .expect("C_GetTokenInfo")
            .serial_number()
            .to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pin"), PIN).expect("pin file");
        SoftHsm {
            dir,
            conf: conf.to_path_buf(),
            label,
            shared_serial: Some(serial),
        }
    }

    /// The `[backends.hsm]` line that gives the daemon its PIN.
    pub fn pin_line(&self) -> String {
        if self.shared_serial.is_some() {
            format!("pin_file = \"{}\"", self.dir.path().join("pin").display())
        } else {
            "pin_env = \"SIGNET_TEST_HSM_PIN\"".to_string()
        }
    }

    /// Runs `pkcs11-tool` (OpenSC) against this token, logged in, and returns stdout.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Vec<u8> {
        let output = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                MODULE,
                "--token-label",
                &self.label,
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

impl Drop for SoftHsm {
    fn drop(&mut self) {
        if let Some(serial) = &self.shared_serial {
            let _ = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &self.conf)
                .args(["--delete-token", "--serial", serial])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The shared SoftHSM config of this test process, written before the module is first loaded.
fn shared_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let conf = PathBuf::from(std::env::var_os("SOFTHSM2_CONF").expect(
            "SOFTHSM2_CONF is unset: run the tests through cargo, whose .cargo/config.toml sets it",
        ));
        let dir = conf.parent().expect("SOFTHSM2_CONF has a folder");
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("in-process token folder");
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        );
        // Written whole and renamed: test processes running side by side write the same text.
        let partial = dir.join(format!("softhsm2.conf.{}", std::process::id()));
        std::fs::write(&partial, text).expect("write SoftHSM config");
        std::fs::rename(&partial, &conf).expect("install SoftHSM config");
        conf
    })
}
