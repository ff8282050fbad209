//! The embedded default store: one SQLite file in WAL mode. Calls run on blocking threads: writes
//! over one connection (SQLite serializes writers anyway), reads over a small pool beside it;
//! each call is a short transaction.
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AppendOutcome, KeyVersionRecord, LogAppend, SessionRecord, SessionScope, Store, StoreError,
    StoredCheckpoint, StoredEntry,
};
use crate::merkle::Hash;

mod append;
mod key_versions;
mod schema;
mod sessions;

use append::{append_batch, last_leaf, log_size, to_hash, to_i64};
use schema::migrate;

/// SQLite-backed `Store`.
///
/// One connection writes, so writers never wait on SQLite's busy handler (which sleeps for
/// milliseconds); a few others read, which WAL lets run beside the writer.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReaderPool>,
    /// Log commits since the WAL was last fully checkpointed (see `after_append_blocking`).
    commits_since_checkpoint: Arc<AtomicU32>,
    /// Keeps the WAL checkpointing thread running while any clone of the store lives.
    _alive: Arc<()>,
}

/// Reading connections: WAL lets them all read beside the writer.
const READERS: usize = 4;

/// The reading connections and one permit for each.
#[derive(Debug)]
struct ReaderPool {
    permits: Arc<tokio::sync::Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

/// A reading connection in use; back in the pool when dropped, even if the work panicked, and
/// only then is its permit released.
struct ReaderLease {
    connection: Option<Connection>,
    readers: Arc<ReaderPool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ReaderLease {
    fn drop(&mut self) {
        if let (Some(connection), Ok(mut idle)) = (self.connection.take(), self.readers.idle.lock())
        {
            idle.push(connection);
        }
    }
}

/// How often the WAL is copied back into the database, off the writer's path.
const WAL_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A checkpoint on the writer at least this slow is logged as a warning.
const SLOW_CHECKPOINT: std::time::Duration = std::time::Duration::from_millis(100);

/// Log commits between checkpoints on the writer's own connection (a few MB of WAL).
const COMMITS_PER_WRITER_CHECKPOINT: u32 = 256;

/// Copies the WAL into the database in the background (PASSIVE: never blocks the writer), so
/// commits never pay for a checkpoint themselves. Stops when the store is dropped.
fn spawn_wal_checkpointer(connection: Connection, alive: std::sync::Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("signet-wal-checkpoint".into())
        .spawn(move || {
            while alive.upgrade().is_some() {
                std::thread::sleep(WAL_CHECKPOINT_INTERVAL);
                if let Err(e) =
                    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the WAL checkpoint thread; SQLite will checkpoint inline");
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let (writer, readers, checkpointer) = tokio::task::spawn_blocking(move || -> Result<(Connection, Vec<Connection>, Connection), StoreError> {
            let open = || Connection::open(&path).map_err(|e| unavailable(format!("{}: {e}", path.display())));
            let mut writer = open()?;
            // Every write commits with synchronous=FULL: the WAL is fsynced before the commit
            // returns, so whatever signet acknowledges survives a power loss. Session writes
            // are rare beside log appends, so they pay their own fsync rather than rely on the
            // next log commit's.
            writer
                .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                .map_err(unavailable)?;
            migrate(&mut writer)?;
            // Benchmark builds only: commits without their fsync, to measure what it costs.
            #[cfg(feature = "bench-unlogged")]
            if std::env::var("SIGNET_BENCH_UNLOGGED").as_deref() == Ok("unsynced") {
                tracing::warn!("SIGNET_BENCH_UNLOGGED=unsynced: log commits are NOT fsynced (benchmark build only)");
                writer.execute_batch("PRAGMA synchronous = NORMAL;").map_err(unavailable)?;
            }
            // Checkpoints run on their own thread (see `spawn_wal_checkpointer`).
            writer
                .execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(unavailable)?;
            let checkpointer = open()?;
            checkpointer
                .execute_batch("PRAGMA busy_timeout = 5000;")
                .map_err(unavailable)?;
            let readers = (0..READERS)
                .map(|_| {
                    let reader = open()?;
                    reader
                        .execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
                        .map_err(unavailable)?;
                    Ok(reader)
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((writer, readers, checkpointer))
        })
        .await
        .map_err(unavailable)??;
        let alive = Arc::new(());
        spawn_wal_checkpointer(checkpointer, Arc::downgrade(&alive));
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(ReaderPool {
                permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
                idle: Mutex::new(readers),
            }),
            commits_since_checkpoint: Arc::new(AtomicU32::new(0)),
            _alive: alive,
        })
    }

    /// Runs `work` on a reading connection. Callers wait for one here, in async code, where a
    /// dropped request stops waiting; only as many blocking tasks run as there are readers.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("store readers closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let connection = readers
                .idle
                .lock()
                .map_err(|_| StoreError::Unavailable("store readers poisoned".into()))?
                .pop()
                .ok_or_else(|| StoreError::Unavailable("no idle store reader".into()))?;
            let mut lease = ReaderLease {
                connection: Some(connection),
                readers,
                _permit: permit,
            };
            match lease.connection.as_mut() {
                Some(connection) => work(connection),
                None => Err(StoreError::Unavailable("no idle store reader".into())),
            }
        })
        .await
        .map_err(unavailable)?
    }

    async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::call_on(&self.writer, work).await
    }

    async fn call_on<T, F>(connection: &Arc<Mutex<Connection>>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = Arc::clone(connection);
        tokio::task::spawn_blocking(move || {
            let mut guard = connection
                .lock()
                .map_err(|_| StoreError::Unavailable("store connection poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sessions::create_session(self, session).await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        sessions::session(self, token_hash).await
    }

    async fn end_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        sessions::end_session(self, token_hash).await
    }

    async fn live_sessions(
        &self,
        scope: &SessionScope,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        sessions::live_sessions(self, scope, now).await
    }

    async fn end_sessions(&self, token_hashes: Vec<String>) -> Result<u64, StoreError> {
        sessions::end_sessions(self, token_hashes).await
    }

    async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
        sessions::purge_sessions(self, before).await
    }

    async fn key_versions(&self, key: &str) -> Result<Vec<KeyVersionRecord>, StoreError> {
        key_versions::key_versions(self, key).await
    }

    async fn insert_key_version(&self, v: &KeyVersionRecord) -> Result<(), StoreError> {
        key_versions::insert_key_version(self, v).await
    }

    async fn record_pending_key(
        &self,
        key: &str,
        version: u32,
        backend_ref: &str,
        public_key_spki: &[u8],
        key_id: &str,
    ) -> Result<(), StoreError> {
        key_versions::record_pending_key(self, key, version, backend_ref, public_key_spki, key_id)
            .await
    }

    async fn mark_key_version_logged(
        &self,
        key: &str,
        version: u32,
        log_index: u64,
    ) -> Result<(), StoreError> {
        key_versions::mark_key_version_logged(self, key, version, log_index).await
    }

    fn append_log_blocking(&self, batch: Vec<LogAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut c = self
            .writer
            .lock()
            .map_err(|_| StoreError::Unavailable("store connection poisoned".into()))?;
        let outcome = append_batch(&mut c, &batch);
        self.commits_since_checkpoint
            .fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// Bounds the WAL. The background checkpointer copies frames back while commits go on, but
    /// under steady load it never catches up with the last frame, and SQLite restarts the WAL
    /// from its start only after a checkpoint that did: without this the WAL grows by every
    /// commit. Here, between commits, nothing is appending, so the checkpoint completes (most
    /// frames are already copied) and the next commit reuses the file from the start.
    fn after_append_blocking(&self) {
        if self.commits_since_checkpoint.load(Ordering::Relaxed) < COMMITS_PER_WRITER_CHECKPOINT {
            return;
        }
        let Ok(c) = self.writer.lock() else { return };
        let started = std::time::Instant::now();
        let checkpoint = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        });
        let took = started.elapsed();
        if took >= SLOW_CHECKPOINT {
            // Appends wait behind it: an operator should see where a stall came from.
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                "slow WAL checkpoint on the log writer"
            );
        }
        match checkpoint {
            // Complete: every frame copied. Busy (the background checkpointer holds the lock,
            // answered as (1, -1, -1)) or a reader still in the WAL: try after the next commit.
            Ok((0, frames, copied)) if frames >= 0 && frames == copied => {
                self.commits_since_checkpoint.store(0, Ordering::Relaxed)
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }

    async fn log_size(&self) -> Result<u64, StoreError> {
        self.read(|c| log_size(c)).await
    }

    async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, StoreError> {
        self.read(move |c| {
            let mut statement = c
                .prepare_cached("SELECT idx, leaf, leaf_hash FROM log_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
                .map_err(unavailable)?;
            let rows = statement
                .query_map(params![to_i64(start), to_i64(end)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Vec<u8>>(2)?))
                })
                .map_err(unavailable)?;
            let mut entries = Vec::new();
            for row in rows {
                let (index, leaf, leaf_hash) = row.map_err(unavailable)?;
                entries.push(StoredEntry {
                    index: u64::try_from(index).map_err(|_| StoreError::Corrupt("negative log index".into()))?,
                    leaf,
                    leaf_hash: to_hash(leaf_hash)?,
                });
            }
            Ok(entries)
        })
        .await
    }

    async fn log_nodes(&self, positions: Vec<(u32, u64)>) -> Result<Vec<Option<Hash>>, StoreError> {
        self.read(move |c| {
            let mut statement = c
                .prepare_cached("SELECT hash FROM log_nodes WHERE level = ?1 AND last_leaf = ?2")
                .map_err(unavailable)?;
            positions
                .iter()
                .map(|(level, index)| {
                    let stored: Option<Vec<u8>> = statement
                        .query_row(params![level, last_leaf(*level, *index)], |row| row.get(0))
                        .optional()
                        .map_err(unavailable)?;
                    stored.map(to_hash).transpose()
                })
                .collect()
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            let row = c
                .query_row(
                    "SELECT size, root, note, created_at FROM log_checkpoints ORDER BY size DESC LIMIT 1",
                    [],
                    |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(size, root, note, created_at)| {
                Ok(StoredCheckpoint {
                    size: u64::try_from(size).map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
                    root: to_hash(root)?,
                    note,
                    created_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn insert_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let checkpoint = checkpoint.clone();
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT root FROM log_checkpoints WHERE size = ?1",
                    [to_i64(checkpoint.size)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            match existing {
                // The same tree signed again (by the log key, after an upgrade from another):
                // the newer note replaces the older.
                Some(root) if root == checkpoint.root => {
                    tx.execute(
                        "UPDATE log_checkpoints SET note = ?2, created_at = ?3 WHERE size = ?1",
                        params![to_i64(checkpoint.size), checkpoint.note, checkpoint.created_at],
                    )
                    .map_err(unavailable)?;
                    return tx.commit().map_err(unavailable);
                }
                Some(_) => {
                    return Err(StoreError::Conflict(format!(
                        "a checkpoint of size {} with another root exists",
                        checkpoint.size
                    )));
                }
                None => {}
            }
            tx.execute(
                "INSERT INTO log_checkpoints (size, root, note, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    to_i64(checkpoint.size),
                    checkpoint.root.as_slice(),
                    checkpoint.note,
                    checkpoint.created_at
                ],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }
}

#[cfg(test)]
mod tests;
