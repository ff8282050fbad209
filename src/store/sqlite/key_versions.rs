//! Key versions: read whole per key, inserted, given their backend key and their log entry.
use rusqlite::params;

use super::{SqliteStore, to_i64, unavailable};
use crate::store::{KeyState, KeyVersionRecord, Revocation, StoreError};

pub(super) async fn key_versions(
    store: &SqliteStore,
    key: &str,
) -> Result<Vec<KeyVersionRecord>, StoreError> {
    let key = key.to_string();
    store.read(move |c| {
        let mut statement = c
            .prepare(
                "SELECT key, version, key_id, backend, backend_ref, algorithm, public_key_spki, state, \
                 created_at, retire_at, log_index, revoked_index, compromised_since FROM key_versions \
                 WHERE key = ?1 ORDER BY version",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map([key], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, Vec<u8>>(6)?,
                    row.get::<_, String>(7)?,
                    row.get::<_, i64>(8)?,
                    row.get::<_, Option<i64>>(9)?,
                    row.get::<_, Option<i64>>(10)?,
                    (row.get::<_, Option<i64>>(11)?, row.get::<_, Option<i64>>(12)?),
                ))
            })
            .map_err(unavailable)?;
        let mut versions = Vec::new();
        for row in rows {
            let (key, version, key_id, backend, backend_ref, algorithm, spki, state, created_at, retire_at, log_index, revoked) =
                row.map_err(unavailable)?;
            let revocation = match revoked {
                (Some(index), Some(compromised_since)) => Some(Revocation {
                    log_index: u64::try_from(index)
                        .map_err(|_| StoreError::Corrupt(format!("key {key} v{version}: revoked_index")))?,
                    compromised_since,
                }),
                (None, None) => None,
                _ => return Err(StoreError::Corrupt(format!("key {key} v{version}: half a revocation"))),
            };
            versions.push(KeyVersionRecord {
                algorithm: algorithm
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("key {key} v{version}: algorithm")))?,
                state: KeyState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("key {key} v{version}: state")))?,
                key,
                version,
                key_id,
                backend,
                backend_ref,
                public_key_spki: spki,
                created_at,
                retire_at,
                log_index: log_index.and_then(|i| u64::try_from(i).ok()),
                revocation,
            });
        }
        Ok(versions)
    })
    .await
}

pub(super) async fn insert_key_version(
    store: &SqliteStore,
    v: &KeyVersionRecord,
) -> Result<(), StoreError> {
    let v = v.clone();
    store.call(move |c| {
        c.execute(
            "INSERT INTO key_versions (key, version, key_id, backend, backend_ref, algorithm, public_key_spki, \
             state, created_at, retire_at, log_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                v.key,
                v.version,
                v.key_id,
                v.backend,
                v.backend_ref,
                v.algorithm.as_str(),
                v.public_key_spki,
                v.state.as_str(),
                v.created_at,
                v.retire_at,
                v.log_index.map(to_i64)
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Conflict(format!("key {} version {} exists", v.key, v.version))
            }
            other => unavailable(other),
        })?;
        Ok(())
    })
    .await
}

pub(super) async fn record_pending_key(
    store: &SqliteStore,
    key: &str,
    version: u32,
    backend_ref: &str,
    public_key_spki: &[u8],
    key_id: &str,
) -> Result<(), StoreError> {
    let (key, backend_ref, spki, key_id) = (
        key.to_string(),
        backend_ref.to_string(),
        public_key_spki.to_vec(),
        key_id.to_string(),
    );
    store
        .call(move |c| {
            let updated = c
                .execute(
                    "UPDATE key_versions SET backend_ref = ?3, public_key_spki = ?4, key_id = ?5 \
                 WHERE key = ?1 AND version = ?2 AND state = 'pending'",
                    params![key, version, backend_ref, spki, key_id],
                )
                .map_err(unavailable)?;
            if updated == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict(format!(
                    "key {key} version {version} is not pending"
                )))
            }
        })
        .await
}

pub(super) async fn mark_key_version_logged(
    store: &SqliteStore,
    key: &str,
    version: u32,
    log_index: u64,
) -> Result<(), StoreError> {
    let key = key.to_string();
    store
        .call(move |c| {
            c.execute(
                "UPDATE key_versions SET log_index = ?3 WHERE key = ?1 AND version = ?2",
                params![key, version, to_i64(log_index)],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
}
