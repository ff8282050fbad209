//! The PKCS#11 module, loaded and initialised once per process.
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

/// Modules loaded and initialised in this process, by path.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// The module at `path`, loaded and `C_Initialize`d once per process and never finalised:
/// PKCS#11 allows one initialisation per process, and finalising would end the sessions of
/// every other backend (or daemon in the same process) on that module.
pub fn shared_module(path: &Path) -> Result<Pkcs11, String> {
    let mut modules = MODULES
        .lock()
        .map_err(|_| "the PKCS#11 module registry is poisoned".to_string())?;
    if let Some((_, ctx)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("C_Initialize: {e}")),
    }
    modules.push((path.to_path_buf(), ctx.clone()));
    Ok(ctx)
}
