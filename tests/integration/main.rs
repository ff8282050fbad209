//! Integration tests: a real SoftHSM token, an OIDC issuer of the tests' own and the `signet`
//! binary on free loopback ports, driven over HTTP. Modules mirror the concerns under test.
mod harness;
mod verify;

mod api_limits;
mod bench;
mod conformance;
mod dev;
mod jwks;
mod log;
mod log_crash;
mod manifest;
mod oidc;
mod pkcs11;
mod rotation;
mod sessions;
mod signing;
mod trust;
mod witness;
mod workflow;
