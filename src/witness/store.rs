//! The witness's state: per log, the largest checkpoint it cosigned, in its own SQLite file.
//! Each update is checked and written in one IMMEDIATE transaction, fsynced before the witness
//! answers.
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::WitnessError;
use crate::merkle::Hash;

/// The latest cosigned checkpoint of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The signed checkpoint as received.
    pub note: String,
}

/// The witness's SQLite state.
#[derive(Debug, Clone)]
pub struct WitnessStore {
    connection: Arc<Mutex<Connection>>,
}

fn failed(error: impl std::fmt::Display) -> WitnessError {
    WitnessError::Store(error.to_string())
}

impl WitnessStore {
    /// Opens (creating if needed) the state at `path`.
    pub fn open(path: &Path) -> Result<WitnessStore, WitnessError> {
        let connection = Connection::open(path).map_err(failed)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS cosigned (
                     origin TEXT PRIMARY KEY,
                     size   INTEGER NOT NULL,
                     root   BLOB NOT NULL,
                     note   TEXT NOT NULL
                 );",
            )
            .map_err(failed)?;
        Ok(WitnessStore {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Replaces the stored checkpoint of `origin` by what `next` makes of it, atomically: no
    /// other request's update can fall between the check and the write.
    pub async fn advance(
        &self,
        origin: String,
        next: impl FnOnce(Option<&Stored>) -> Result<Stored, WitnessError> + Send + 'static,
    ) -> Result<(), WitnessError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(failed)?;
            let tx = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(failed)?;
            let stored = read(&tx, &origin)?;
            let new = next(stored.as_ref())?;
            let size = i64::try_from(new.size).map_err(failed)?;
            tx.execute(
                "INSERT INTO cosigned (origin, size, root, note) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(origin) DO UPDATE SET size = ?2, root = ?3, note = ?4",
                params![origin, size, new.root.to_vec(), new.note],
            )
            .map_err(failed)?;
            tx.commit().map_err(failed)
        })
        .await
        .map_err(failed)?
    }
}

fn read(connection: &Connection, origin: &str) -> Result<Option<Stored>, WitnessError> {
    connection
        .query_row(
            "SELECT size, root, note FROM cosigned WHERE origin = ?1",
            params![origin],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()
        .map_err(failed)?
        .map(|(size, root, note)| {
            Ok(Stored {
                size: u64::try_from(size).map_err(failed)?,
                root: Hash::try_from(root.as_slice()).map_err(failed)?,
                note,
            })
        })
        .transpose()
}
