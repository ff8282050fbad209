//! Sessions: created once, read on the signing path (through the cache), ended one at a time or
//! by an administrator's scope, purged after expiry.
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, to_i64, unavailable};
use crate::store::{SessionRecord, SessionScope, StoreError};

pub(super) const SESSION_COLUMNS: &str = "token_hash, issuer, subject, policy, keys, created_at, expires_at, \
                               max_signatures, used, ended, session_id, iss, claims";

/// A session row with its `keys` and `claims` JSON still to be parsed.
type SessionRow = (SessionRecord, String, String);

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok((
        SessionRecord {
            token_hash: row.get(0)?,
            session_id: row.get(10)?,
            issuer: row.get(1)?,
            iss: row.get(11)?,
            claims: Default::default(),
            subject: row.get(2)?,
            policy: row.get(3)?,
            keys: Vec::new(),
            created_at: row.get(5)?,
            expires_at: row.get(6)?,
            max_signatures: row.get::<_, i64>(7)?.max(0) as u64,
            used: row.get::<_, i64>(8)?.max(0) as u64,
            ended: row.get(9)?,
        },
        row.get(4)?,
        row.get(12)?,
    ))
}

fn finish_session((mut record, keys, claims): SessionRow) -> Result<SessionRecord, StoreError> {
    record.keys = serde_json::from_str(&keys)
        .map_err(|e| StoreError::Corrupt(format!("session keys: {e}")))?;
    record.claims = serde_json::from_str(&claims)
        .map_err(|e| StoreError::Corrupt(format!("session claims: {e}")))?;
    Ok(record)
}

pub(super) async fn create_session(
    store: &SqliteStore,
    session: &SessionRecord,
) -> Result<(), StoreError> {
    let s = session.clone();
    let keys = serde_json::to_string(&s.keys).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let claims =
        serde_json::to_string(&s.claims).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store
        .call(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    s.token_hash,
                    s.issuer,
                    s.subject,
                    s.policy,
                    keys,
                    s.created_at,
                    s.expires_at,
                    to_i64(s.max_signatures),
                    to_i64(s.used),
                    s.ended,
                    s.session_id,
                    s.iss,
                    claims
                ],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
}

pub(super) async fn session(
    store: &SqliteStore,
    token_hash: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let hash = token_hash.to_string();
    store
        .read(move |c| {
            c.query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1"),
                [hash],
                session_from_row,
            )
            .optional()
            .map_err(unavailable)?
            .map(finish_session)
            .transpose()
        })
        .await
}

pub(super) async fn end_session(store: &SqliteStore, token_hash: &str) -> Result<bool, StoreError> {
    let hash = token_hash.to_string();
    store
        .call(move |c| {
            let changed = c
                .execute(
                    "UPDATE sessions SET ended = 1 WHERE token_hash = ?1 AND ended = 0",
                    [hash],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
}

pub(super) async fn live_sessions(
    store: &SqliteStore,
    scope: &SessionScope,
    now: i64,
) -> Result<Vec<SessionRecord>, StoreError> {
    let (filter, value) = match scope {
        SessionScope::Subject(subject) => ("AND subject = ?2", subject.clone()),
        SessionScope::Policy(policy) => ("AND policy = ?2", policy.clone()),
        SessionScope::All => ("AND ?2 = ?2", String::new()),
    };
    store.read(move |c| {
        let mut statement = c
            .prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE ended = 0 AND expires_at > ?1 {filter}"
            ))
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![now, value], session_from_row)
            .map_err(unavailable)?;
        rows.map(|row| row.map_err(unavailable).and_then(finish_session))
            .collect()
    })
    .await
}

pub(super) async fn end_sessions(
    store: &SqliteStore,
    token_hashes: Vec<String>,
) -> Result<u64, StoreError> {
    store
        .call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let mut ended = 0;
            {
                let mut statement = tx
                    .prepare_cached(
                        "UPDATE sessions SET ended = 1 WHERE token_hash = ?1 AND ended = 0",
                    )
                    .map_err(unavailable)?;
                for hash in &token_hashes {
                    ended += statement.execute([hash]).map_err(unavailable)? as u64;
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(ended)
        })
        .await
}

pub(super) async fn purge_sessions(store: &SqliteStore, before: i64) -> Result<u64, StoreError> {
    store
        .call(move |c| {
            let deleted = c
                .execute("DELETE FROM sessions WHERE expires_at < ?1", [before])
                .map_err(unavailable)?;
            Ok(deleted as u64)
        })
        .await
}
