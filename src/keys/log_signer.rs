//! The log key lent to the log as its `CheckpointSigner`: the log never sees the key ring.
use super::*;

/// The log key signing checkpoints through its backend (Ed25519 over the note text).
#[derive(Debug)]
pub struct LogKeySigner {
    pub(super) backend: Arc<dyn SigningBackend>,
    pub(super) reference: String,
    pub(super) verifier: crate::note::VerifierKey,
}

#[async_trait::async_trait]
impl crate::log::CheckpointSigner for LogKeySigner {
    fn verifier(&self) -> &crate::note::VerifierKey {
        &self.verifier
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut signatures = self
            .backend
            .sign(&self.reference, Algorithm::EdDSA, vec![message.to_vec()])
            .await?;
        signatures.pop().ok_or_else(|| BackendError::Malformed {
            backend: self.backend.name().to_string(),
            reason: "no signature in the answer".into(),
        })
    }
}
