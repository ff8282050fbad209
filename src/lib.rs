//! signet: a signing daemon for ML model provenance.
//!
//! The daemon holds no private keys. Keys live in backends (PKCS#11 HSMs, AWS KMS, Cloud KMS,
//! Vault Transit); callers authenticate with OIDC ID tokens, policies map their claims to keys,
//! and they get short-lived signing sessions. Module map:
//!
//! - [`app`]: the daemon built in one place (`App::start`) and the state requests share.
//! - [`clock`]: injected time; a manual clock for in-process tests.
//! - [`config`]: TOML configuration, validated at start-up with every error listed.
//! - [`oidc`]: ID token verification against each issuer's discovered JWKS.
//! - [`policy`]: claims to a decision (which keys, TTL, quota); deny by default.
//! - [`session`]: opaque session tokens (only their hash is stored), expiry, quota.
//! - [`store`]: the persistence trait and its embedded SQLite implementation.
//! - [`backend`]: the `SigningBackend` trait, one file per backend.
//! - [`keys`]: logical keys, their versions and the backend keys behind them.
//! - [`jwks`]: public keys as JWKs with RFC 7638 thumbprints as `kid`.
//! - [`algorithm`]: signing algorithms (JOSE names) and `sha256:<hex>` digests.
//! - [`merkle`]: RFC 9162 hashes, proofs and their verification (pure; verifiers use it too).
//! - [`checkpoint`]: C2SP checkpoints, checked under a pinned log key (pure).
//! - [`log`]: the daemon's tamper-evident log: durable group-committed appends, proofs from
//!   the store, the checkpointer and its anchor.
//! - [`tiles`]: C2SP tlog-tiles paths, tile sets and entry bundles (pure).
//! - [`cosignature`]: C2SP tlog-cosignature v1: witness keys, cosigning and checking (pure).
//! - [`note`]: C2SP signed notes and the Ed25519 verifier keys (`vkey`) verifiers pin.
//! - [`canonical`]: RFC 8785 canonical JSON (log leaves, manifests).
//! - [`manifest`]: the model manifest: per-file SHA-256 and provenance.
//! - [`bundle`]: `model.sig`, the Sigstore bundle in the OpenSSF model-signing format.
//! - [`tlog_proof`]: C2SP tlog-proof, one entry's offline proof (pure).
//! - [`receipt`]: `signet-receipt.json`, a signature's log entries with inclusion proofs.
//! - [`signature`]: checking a detached signature against a JWK.
//! - [`signing`]: the signing use case: session, key, policy, backend, quota and log.
//! - [`trust`]: the trust root: key versions proven in the log; validity by log order.
//! - [`verify`]: verifying a signed model at deployment.
//! - [`witness`]: a C2SP tlog-witness (`signet witness serve`), its config and state.
//! - [`id_token`]: where `signet sign` gets the caller's OIDC ID token.
//! - [`api`]: the HTTP API and the one error to problem+json mapping.
//! - [`client`]: the HTTP client the CLI uses.
//! - [`cli`]: the `signet` command line.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(clippy::unwrap_used)]

pub mod algorithm;
pub mod api;
pub mod app;
pub mod backend;
pub mod bundle;
pub mod canonical;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod cosignature;
pub mod id_token;
pub mod jwks;
pub mod keys;
pub mod log;
pub mod manifest;
pub mod merkle;
pub mod note;
pub mod oidc;
pub mod policy;
pub mod receipt;
pub mod session;
pub mod signature;
pub mod signing;
pub mod store;
pub mod tiles;
pub mod tlog_proof;
pub mod trust;
pub mod verify;
pub mod witness;
