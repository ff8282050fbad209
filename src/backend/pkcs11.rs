//! PKCS#11 backend (`cryptoki`): HSMs, SoftHSM in tests. Every PKCS#11 call runs off the async
//! threads, on a small pool of logged-in sessions (a `Session` is `Send`, not `Sync`: one thread
//! at a time). Sessions are re-opened and logged in again when the token drops them.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tokio::sync::Semaphore;

use super::{BackendError, BackendKey, KeySpec, SigningBackend};

mod module;
mod objects;

pub use module::shared_module;

use crate::algorithm::Algorithm;
use crate::config::backend::Pkcs11Config;
use crate::config::secret::Secret;
use objects::{
    Lookup, ecdsa_raw_to_der, find, generate, lookup, mechanism, public_key_spki, signing_input,
};

/// A PKCS#11 token used as a signing backend.
pub struct Pkcs11Backend {
    name: String,
    token: Arc<Token>,
    /// One permit per pooled session: callers wait here, not on a thread.
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// Sessions one batch is spread over: the cores, so a lone batch keeps them all busy.
    batch_parallelism: usize,
}

/// Pauses before searching the token again for a key it did not show (made by another process).
const KEY_APPEARANCE_RETRIES: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(80),
    Duration::from_millis(200),
];

/// Fewest digests worth a session of their own in a batch.
const MIN_DIGESTS_PER_SESSION: usize = 8;

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("name", &self.name)
            .field("slot", &self.token.slot)
            .finish_non_exhaustive()
    }
}

/// The token and its pool; shared with the blocking threads.
struct Token {
    backend: String,
    ctx: Pkcs11,
    slot: Slot,
    pin: Secret<String>,
    idle: Mutex<Vec<Session>>,
    /// Private key handles by label, valid while the token keeps us logged in.
    handles: RwLock<HashMap<String, ObjectHandle>>,
}

impl Pkcs11Backend {
    /// Loads the module, finds the token by label and logs in one session to check the PIN.
    pub async fn connect(name: &str, config: &Pkcs11Config) -> Result<Self, BackendError> {
        let fail = |reason: String| BackendError::Unavailable {
            backend: name.to_string(),
            reason,
        };
        let pin_source = config
            .pin_source()
            .ok_or_else(|| fail("no PIN source configured".into()))?;
        let pin = pin_source.read().map_err(|e| fail(e.to_string()))?;
        // A session stays checked out while its blocking thread waits for a core, not only
        // while the token works: one session per core left SoftHSM idle under load (6.5k
        // signatures/s against 8.7k with 4 per core, on 2 cores; docs/benchmarks.md). At most
        // 16 by default: small HSMs allow few sessions (set `pool_size` for more).
        let pool_size = config.pool_size.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .saturating_mul(4)
                .clamp(8, 16)
        });
        let module = config.module.clone();
        let label = config.token_label.clone();
        let backend = name.to_string();
        let token = tokio::task::spawn_blocking(move || -> Result<Token, String> {
            let ctx = shared_module(&module)?;
            let slots = ctx
                .get_slots_with_token()
                .map_err(|e| format!("C_GetSlotList: {e}"))?;
            let slot = slots
                .into_iter()
                .find(|slot| {
                    ctx.get_token_info(*slot)
                        .map(|info| info.label().trim_end() == label)
                        .unwrap_or(false)
                })
                .ok_or_else(|| format!("no token labelled {label:?}"))?;
            Ok(Token {
                backend,
                ctx,
                slot,
                pin,
                idle: Mutex::new(Vec::new()),
                handles: RwLock::new(HashMap::new()),
            })
        })
        .await
        .map_err(|e| fail(format!("start-up task failed: {e}")))?
        .map_err(fail)?;

        let backend = Pkcs11Backend {
            name: name.to_string(),
            token: Arc::new(token),
            permits: Arc::new(Semaphore::new(pool_size)),
            timeout: config.timeout.get(),
            batch_parallelism: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(pool_size),
        };
        // Open and log in the first session now, so a wrong PIN stops start-up.
        backend.with_session(|_, _| Ok(())).await?;
        Ok(backend)
    }

    /// Runs `work` on a pooled, logged-in session on a blocking thread, with the call timeout.
    /// When the token has dropped the session or the login, it opens a new one and retries once.
    async fn with_session<T, F>(&self, work: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Token, &Session) -> Result<T, CkError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| self.unavailable("session pool closed".into()))?;
        let token = Arc::clone(&self.token);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            token.run(&work)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => Err(BackendError::Timeout {
                backend: self.name.clone(),
                after: self.timeout,
            }),
            Ok(Err(join)) => Err(self.unavailable(format!("worker failed: {join}"))),
            Ok(Ok(result)) => result,
        }
    }

    /// Signs `digests` in order on one pooled session.
    async fn sign_on_one_session(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let label = reference.to_string();
        let raw = self
            .with_session(move |token, session| {
                let key = token.private_key(session, &label)?;
                let mechanism = mechanism(algorithm);
                digests
                    .iter()
                    .map(|digest| session.sign(&mechanism, key, &signing_input(algorithm, digest)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => raw
                .iter()
                .map(|r| ecdsa_raw_to_der(algorithm, r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| BackendError::Malformed {
                    backend: self.name.clone(),
                    reason,
                }),
            Algorithm::PS256 | Algorithm::RS256 => Ok(raw),
            Algorithm::EdDSA => match raw.iter().find(|r| r.len() != 64) {
                Some(r) => Err(BackendError::Malformed {
                    backend: self.name.clone(),
                    reason: format!("an Ed25519 signature of {} bytes", r.len()),
                }),
                None => Ok(raw),
            },
        }
    }

    fn unavailable(&self, reason: String) -> BackendError {
        BackendError::Unavailable {
            backend: self.name.clone(),
            reason,
        }
    }
}

/// Errors after which a fresh, logged-in session and fresh handles may succeed.
fn is_session_lost(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
            _
        )
    )
}

impl Token {
    fn run<T>(
        &self,
        work: &dyn Fn(&Token, &Session) -> Result<T, CkError>,
    ) -> Result<T, BackendError> {
        let session = self.checkout().map_err(|e| self.error(e))?;
        match work(self, &session) {
            Ok(value) => {
                self.checkin(session);
                Ok(value)
            }
            Err(e) if is_session_lost(&e) => {
                drop(session);
                self.forget_handles();
                let session = self.open_session().map_err(|e| self.error(e))?;
                let result = work(self, &session).map_err(|e| self.error(e));
                if result.is_ok() {
                    self.checkin(session);
                }
                result
            }
            Err(e) => {
                self.checkin(session);
                Err(self.error(e))
            }
        }
    }

    fn checkout(&self) -> Result<Session, CkError> {
        let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        match pooled {
            Some(session) => Ok(session),
            None => self.open_session(),
        }
    }

    fn checkin(&self, session: Session) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(session);
        }
    }

    fn open_session(&self) -> Result<Session, CkError> {
        let session = self.ctx.open_rw_session(self.slot)?;
        let pin = AuthPin::from(self.pin.expose().clone());
        match session.login(UserType::User, Some(&pin)) {
            // Login state is per token: another pooled session may have logged in already.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(e),
        }
    }

    fn forget_handles(&self) {
        if let Ok(mut handles) = self.handles.write() {
            handles.clear();
        }
    }

    fn error(&self, error: CkError) -> BackendError {
        let reason = error.to_string();
        match error {
            CkError::Pkcs11(
                RvError::PinIncorrect
                | RvError::PinExpired
                | RvError::PinLocked
                | RvError::PinInvalid,
                _,
            ) => BackendError::Unavailable {
                backend: self.backend.clone(),
                reason: "the token refused the PIN".to_string(),
            },
            CkError::Pkcs11(
                RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::SessionHandleInvalid
                | RvError::UserNotLoggedIn
                | RvError::SessionCount,
                _,
            )
            | CkError::LibraryLoading(_) => BackendError::Unavailable {
                backend: self.backend.clone(),
                reason,
            },
            _ => BackendError::Failed {
                backend: self.backend.clone(),
                reason,
            },
        }
    }

    /// The private key labelled `label`: a cached handle, or one found now.
    fn private_key(&self, session: &Session, label: &str) -> Result<ObjectHandle, CkError> {
        if let Some(handle) = self.handles.read().ok().and_then(|h| h.get(label).copied()) {
            return Ok(handle);
        }
        let mut found = find(session, ObjectClass::PRIVATE_KEY, label)?;
        // A key another process made moments ago (a break-glass rotation) can take a moment to
        // show in this process's view of the token: a search that finds none is tried again.
        for pause in KEY_APPEARANCE_RETRIES {
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(pause);
            found = find(session, ObjectClass::PRIVATE_KEY, label)?;
        }
        let handle = match found.as_slice() {
            [one] => *one,
            // Not one key: surface as an invalid handle so the caller's error says which.
            _ => {
                return Err(CkError::Pkcs11(
                    RvError::KeyHandleInvalid,
                    cryptoki::context::Function::FindObjects,
                ));
            }
        };
        if let Ok(mut handles) = self.handles.write() {
            handles.insert(label.to_string(), handle);
        }
        Ok(handle)
    }
}

#[async_trait]
impl SigningBackend for Pkcs11Backend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn find_or_create(&self, spec: &KeySpec) -> Result<BackendKey, BackendError> {
        let spec_for_task = spec.clone();
        let outcome = self
            .with_session(move |_, session| {
                let spec = &spec_for_task;
                let (public, created) = match lookup(session, &spec.backend_key)? {
                    Lookup::Found { public, .. } => (public, false),
                    Lookup::Missing => (generate(session, spec)?.0, true),
                    Lookup::PublicMissing => {
                        return Ok(Err("the private key has no public key object with the same label".to_string()));
                    }
                    Lookup::Ambiguous(private, public) => {
                        return Ok(Err(format!(
                            "{private} private and {public} public key objects carry this label; expected one of each"
                        )));
                    }
                };
                Ok(public_key_spki(session, public, spec.algorithm)?.map(|spki| (spki, created)))
            })
            .await?;
        match outcome {
            Ok((public_key_spki, created)) => Ok(BackendKey {
                reference: spec.backend_key.clone(),
                public_key_spki,
                created,
            }),
            Err(reason) => Err(BackendError::KeyMismatch {
                backend: self.name.clone(),
                key: spec.backend_key.clone(),
                algorithm: spec.algorithm,
                reason,
            }),
        }
    }

    /// A new key pair labelled `LABEL.vN`: found again (not duplicated) if a crash interrupted
    /// an earlier attempt at the same version.
    async fn create_version(
        &self,
        spec: &KeySpec,
        _current: &str,
        version: u32,
    ) -> Result<BackendKey, BackendError> {
        let versioned = KeySpec {
            backend_key: format!("{}.v{version}", spec.backend_key),
            ..spec.clone()
        };
        self.find_or_create(&versioned).await
    }

    async fn public_key(
        &self,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, BackendError> {
        let label = reference.to_string();
        let outcome = self
            .with_session(move |_, session| match lookup(session, &label)? {
                Lookup::Found { public, .. } => public_key_spki(session, public, algorithm),
                Lookup::Missing | Lookup::PublicMissing => {
                    Ok(Err("not found in the token".to_string()))
                }
                Lookup::Ambiguous(..) => {
                    Ok(Err("more than one key carries this label".to_string()))
                }
            })
            .await?;
        outcome.map_err(|reason| BackendError::KeyUnusable {
            backend: self.name.clone(),
            key: reference.to_string(),
            reason,
        })
    }

    /// A batch is split over several sessions, signed in parallel: a token signs on one
    /// session at a time, so 100 digests on one session would keep one core busy for the
    /// whole batch.
    async fn sign(
        &self,
        reference: &str,
        algorithm: Algorithm,
        digests: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let per_session = digests
            .len()
            .div_ceil(self.batch_parallelism)
            .max(MIN_DIGESTS_PER_SESSION);
        if digests.len() <= per_session {
            return self
                .sign_on_one_session(reference, algorithm, digests)
                .await;
        }
        let chunks = digests
            .chunks(per_session)
            .map(|chunk| self.sign_on_one_session(reference, algorithm, chunk.to_vec()));
        let signed = futures_util::future::try_join_all(chunks).await?;
        Ok(signed.into_iter().flatten().collect())
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.with_session(|_, session| session.get_session_info().map(|_| ()))
            .await
    }

    /// The token is a library in this process: its answers are not checked again (this path is
    /// the latency floor the benchmark compares against).
    fn answers_need_checking(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::objects::unwrap_ec_point;
    use super::*;

    #[test]
    fn ec_point_unwraps_octet_string() {
        let mut wrapped = vec![0x04, 65, 0x04];
        wrapped.extend([7u8; 64]);
        assert_eq!(unwrap_ec_point(&wrapped, 65).len(), 65);
        let bare = &wrapped[2..];
        assert_eq!(unwrap_ec_point(bare, 65), bare);
    }

    #[test]
    fn rs256_signs_digest_info() {
        // The DigestInfo prefix of SHA-256 as the `rsa` crate builds it from the hash's OID
        // (RFC 8017, section 9.2, note 1).
        let input = signing_input(Algorithm::RS256, &[7u8; 32]);
        let expected = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
        assert_eq!(input.len(), expected.prefix.len() + 32);
        assert_eq!(&input[..expected.prefix.len()], &expected.prefix[..]);
        assert_eq!(&input[expected.prefix.len()..], &[7u8; 32]);
    }

    #[test]
    fn raw_ecdsa_converts_to_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1;
        raw[63] = 2;
        let der = ecdsa_raw_to_der(Algorithm::ES256, &raw).expect("valid r, s");
        assert_eq!(der, vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]);
        assert!(ecdsa_raw_to_der(Algorithm::ES256, &raw[..63]).is_err());
    }
}
