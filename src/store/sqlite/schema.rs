//! The schema: migrations applied in order at start-up, `PRAGMA user_version` counting them.
use rusqlite::Connection;

use super::unavailable;
use crate::store::StoreError;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    token_hash     TEXT PRIMARY KEY,
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    policy         TEXT NOT NULL,
    keys           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_signatures INTEGER NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0,
    ended          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE TABLE key_versions (
    key             TEXT NOT NULL,
    version         INTEGER NOT NULL,
    key_id          TEXT NOT NULL,
    backend         TEXT NOT NULL,
    backend_ref     TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    public_key_spki BLOB NOT NULL,
    state           TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    retire_at       INTEGER,
    PRIMARY KEY (key, version)
);
"#,
    r#"
ALTER TABLE sessions ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN iss TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
ALTER TABLE key_versions ADD COLUMN log_index INTEGER;
CREATE TABLE log_entries (
    idx       INTEGER PRIMARY KEY,
    leaf      BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
-- Perfect-subtree hashes, keyed by the last leaf they cover so that the nodes one append
-- completes sit together at the B-tree's right edge (one page per commit, not one per level).
CREATE TABLE log_nodes (
    last_leaf INTEGER NOT NULL,
    level     INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (last_leaf, level)
) WITHOUT ROWID;
CREATE TABLE log_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE key_versions ADD COLUMN revoked_index INTEGER;
ALTER TABLE key_versions ADD COLUMN compromised_since INTEGER;
"#,
];

pub(super) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(unavailable)?;
    let applied = usize::try_from(applied)
        .map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {applied} is newer than this signet ({})",
            MIGRATIONS.len()
        )));
    }
    for (number, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = connection.transaction().map_err(unavailable)?;
        tx.execute_batch(sql).map_err(unavailable)?;
        tx.pragma_update(None, "user_version", (number + 1) as i64)
            .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
    }
    Ok(())
}
