//! PKCS#11 backend (`cryptoki`): HSMs, SoftHSM in tests. Every PKCS#11 call runs off the async
//! threads, on a small pool of logged-in sessions (a `Session` is `Send`, not `Sync`: one thread
//! at a time). Sessions are re-opened and logged in again when the token drops them.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::pkcs8::EncodePublicKey;
use tokio::sync::Semaphore;

use super::{BackendError, BackendKey, KeySpec, SigningBackend};
use crate::algorithm::Algorithm;
use crate::config::backend::Pkcs11Config;
use crate::config::secret::Secret;

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of P-256 keys.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID (1.3.132.0.34).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// `CKA_EC_PARAMS` of Ed25519 keys: the RFC 8410 OID id-Ed25519 (1.3.101.112).
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1): `CKM_RSA_PKCS` signs DigestInfo.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

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
            let ctx = Pkcs11::new(&module)
                .map_err(|e| format!("cannot load {}: {e}", module.display()))?;
            match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                Err(e) => return Err(format!("C_Initialize: {e}")),
            }
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
        let found = find(session, ObjectClass::PRIVATE_KEY, label)?;
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

fn find(session: &Session, class: ObjectClass, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    session.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

fn mechanism(algorithm: Algorithm) -> Mechanism<'static> {
    match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => Mechanism::Ecdsa,
        Algorithm::PS256 => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }),
        Algorithm::RS256 => Mechanism::RsaPkcs,
        // Pure Ed25519 over the whole message (no parameters: the curve defines the scheme).
        Algorithm::EdDSA => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
    }
}

/// The bytes the mechanism signs for one digest.
fn signing_input(algorithm: Algorithm, digest: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::RS256 => [SHA256_DIGEST_INFO, digest].concat(),
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::PS256 | Algorithm::EdDSA => {
            digest.to_vec()
        }
    }
}

/// Outcome of looking a key up, before it is turned into a `BackendKey`.
enum Lookup {
    Found { public: ObjectHandle },
    Ambiguous(usize, usize),
    PublicMissing,
    Missing,
}

fn lookup(session: &Session, label: &str) -> Result<Lookup, CkError> {
    let private = find(session, ObjectClass::PRIVATE_KEY, label)?;
    let public = find(session, ObjectClass::PUBLIC_KEY, label)?;
    Ok(match (private.as_slice(), public.as_slice()) {
        ([], []) => Lookup::Missing,
        ([_], [public]) => Lookup::Found { public: *public },
        ([_], []) => Lookup::PublicMissing,
        _ => Lookup::Ambiguous(private.len(), public.len()),
    })
}

fn generate(session: &Session, spec: &KeySpec) -> Result<(ObjectHandle, ObjectHandle), CkError> {
    let label = spec.backend_key.as_bytes().to_vec();
    let mut id = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut id);
    let common_private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.to_vec()),
    ];
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Label(label),
        Attribute::Id(id.to_vec()),
    ];
    let mechanism = match spec.algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            let params = if spec.algorithm == Algorithm::ES256 {
                P256_PARAMS
            } else {
                P384_PARAMS
            };
            public.push(Attribute::EcParams(params.to_vec()));
            Mechanism::EccKeyPairGen
        }
        Algorithm::PS256 | Algorithm::RS256 => {
            public.push(Attribute::ModulusBits(u64::from(spec.rsa_bits).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
        Algorithm::EdDSA => {
            public.push(Attribute::EcParams(ED25519_PARAMS.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
    };
    let mut private = common_private;
    if spec.algorithm.is_rsa() {
        // SoftHSM rejects CKA_DERIVE on RSA private key templates.
        private.retain(|a| !matches!(a, Attribute::Derive(_)));
    }
    session.generate_key_pair(&mechanism, &public, &private)
}

/// The public key of `handle` as SPKI DER, checked against the configured algorithm.
fn public_key_spki(
    session: &Session,
    handle: ObjectHandle,
    algorithm: Algorithm,
) -> Result<Result<Vec<u8>, String>, CkError> {
    let attributes = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::EcPoint,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ],
    )?;
    let mut key_type = None;
    let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            _ => {}
        }
    }
    Ok(match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            if key_type != Some(KeyType::EC) {
                return Ok(Err("not an EC key".to_string()));
            }
            let (expected_params, point_len) = if algorithm == Algorithm::ES256 {
                (P256_PARAMS, 65)
            } else {
                (P384_PARAMS, 97)
            };
            if params.as_deref() != Some(expected_params) {
                return Ok(Err("the key is on another curve".to_string()));
            }
            let Some(point) = point else {
                return Ok(Err("no CKA_EC_POINT".to_string()));
            };
            let point = unwrap_ec_point(&point, point_len);
            let der = if algorithm == Algorithm::ES256 {
                p256::PublicKey::from_sec1_bytes(point)
                    .map_err(|_| "invalid P-256 point".to_string())
                    .and_then(|k| k.to_public_key_der().map_err(|e| e.to_string()))
            } else {
                p384::PublicKey::from_sec1_bytes(point)
                    .map_err(|_| "invalid P-384 point".to_string())
                    .and_then(|k| k.to_public_key_der().map_err(|e| e.to_string()))
            };
            der.map(|d| d.as_bytes().to_vec())
        }
        Algorithm::EdDSA => {
            if key_type != Some(KeyType::EC_EDWARDS) {
                return Ok(Err("not an Ed25519 key".to_string()));
            }
            if params.as_deref() != Some(ED25519_PARAMS) {
                return Ok(Err("the key is on another curve".to_string()));
            }
            let Some(point) = point else {
                return Ok(Err("no CKA_EC_POINT".to_string()));
            };
            match <[u8; 32]>::try_from(unwrap_ec_point(&point, 32)) {
                Ok(raw) => Ok(crate::jwks::ed25519_spki(&raw)),
                Err(_) => Err("CKA_EC_POINT is not a 32-byte Ed25519 key".to_string()),
            }
        }
        Algorithm::PS256 | Algorithm::RS256 => {
            if key_type != Some(KeyType::RSA) {
                return Ok(Err("not an RSA key".to_string()));
            }
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Ok(Err("no modulus or exponent".to_string()));
            };
            if n.len() * 8 < 2048 {
                return Ok(Err("RSA keys must be at least 2048 bits".to_string()));
            }
            rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| e.to_string())
            .and_then(|k| {
                rsa::pkcs8::EncodePublicKey::to_public_key_der(&k).map_err(|e| e.to_string())
            })
            .map(|d| d.as_bytes().to_vec())
        }
    })
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the SEC1 point on most tokens, bare on a few.
fn unwrap_ec_point(value: &[u8], point_len: usize) -> &[u8] {
    match value {
        [0x04, len, rest @ ..] if *len as usize == point_len && rest.len() == point_len => rest,
        _ => value,
    }
}

#[async_trait]
impl SigningBackend for Pkcs11Backend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pkcs11"
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

/// Converts a fixed-size ECDSA `r || s` signature (as PKCS#11 returns it) into ASN.1 DER.
fn ecdsa_raw_to_der(algorithm: Algorithm, raw: &[u8]) -> Result<Vec<u8>, String> {
    match algorithm {
        Algorithm::ES256 => p256::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| format!("ECDSA P-256 signature of {} bytes, expected 64", raw.len())),
        Algorithm::ES384 => p384::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| format!("ECDSA P-384 signature of {} bytes, expected 96", raw.len())),
        Algorithm::PS256 | Algorithm::RS256 | Algorithm::EdDSA => {
            Err("not an ECDSA algorithm".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
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
