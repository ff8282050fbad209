//! Version 1 of a key: the versions the store recorded, checked against the backend, or the
//! backend's key (found by `backend_key`, or created there) recorded as version 1.
use super::*;

pub(super) async fn load_versions(
    config: &KeyConfig,
    backend: &Arc<dyn SigningBackend>,
    store: &Arc<dyn Store>,
    clock: &dyn Clock,
) -> Result<Vec<KeyVersionRecord>, KeyError> {
    let inconsistent = |reason: String| KeyError::Inconsistent {
        key: config.name.clone(),
        reason,
    };
    let versions = store.key_versions(&config.name).await?;
    if versions.is_empty() {
        let spec = KeySpec {
            key_name: config.name.clone(),
            backend_key: config.backend_key().to_string(),
            algorithm: config.algorithm,
            rsa_bits: config.rsa_bits,
        };
        let found = backend.find_or_create(&spec).await?;
        let jwk =
            jwks::jwk_from_spki(&found.public_key_spki, config.algorithm).map_err(|source| {
                KeyError::PublicKey {
                    key: config.name.clone(),
                    source,
                }
            })?;
        if found.created {
            tracing::info!(key = %config.name, backend = %backend.name(), kid = %jwk.kid, "created version 1 inside the backend");
        }
        let record = KeyVersionRecord {
            key: config.name.clone(),
            version: 1,
            key_id: jwk.kid,
            backend: backend.name().to_string(),
            backend_ref: found.reference,
            algorithm: config.algorithm,
            public_key_spki: found.public_key_spki,
            state: KeyState::Active,
            created_at: clock.now_unix(),
            retire_at: None,
            log_index: None,
            revocation: None,
        };
        match store.insert_key_version(&record).await {
            Ok(()) => return Ok(vec![record]),
            // Another replica recorded version 1 first: use what it recorded.
            Err(StoreError::Conflict(_)) => {
                return Box::pin(load_versions(config, backend, store, clock)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for version in &versions {
        if matches!(version.state, KeyState::Retired | KeyState::Pending) {
            continue;
        }
        if version.algorithm != config.algorithm {
            return Err(inconsistent(format!(
                "version {} is {} but the config says {}; add a new key instead of changing the algorithm",
                version.version, version.algorithm, config.algorithm
            )));
        }
        if version.backend != backend.name() {
            return Err(inconsistent(format!(
                "version {} lives in backend {} but the config says {}",
                version.version,
                version.backend,
                backend.name()
            )));
        }
        // A key swapped inside the HSM behind our back must not be published under the old kid.
        let spki = backend
            .public_key(&version.backend_ref, version.algorithm)
            .await?;
        if spki != version.public_key_spki {
            return Err(inconsistent(format!(
                "the backend's public key for version {} differs from the one recorded (kid {})",
                version.version, version.key_id
            )));
        }
    }
    Ok(versions)
}
