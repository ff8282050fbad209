//! The log's group commit: quota charges, key changes and the signing version's state checked,
//! then leaves and the Merkle nodes they complete written, all in one transaction.
use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::unavailable;
use crate::merkle::{self, Hash};
use crate::store::{AppendOutcome, KeyChange, LogAppend, QuotaCharge, QuotaOutcome, StoreError};

/// Charges `count` signatures to a session if it is live at `now` and has quota left. One
/// conditional UPDATE: the check and the increment are a single atomic step.
pub(super) fn charge_quota(
    c: &Connection,
    charge: &QuotaCharge,
) -> Result<QuotaOutcome, StoreError> {
    let reserved: Option<i64> = c
        .prepare_cached(
            "UPDATE sessions SET used = used + ?2 \
             WHERE token_hash = ?1 AND ended = 0 AND expires_at > ?3 AND used + ?2 <= max_signatures \
             RETURNING max_signatures - used",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![charge.token_hash, to_i64(charge.count), charge.now], |row| row.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    if let Some(remaining) = reserved {
        return Ok(QuotaOutcome::Reserved {
            remaining: remaining.max(0) as u64,
        });
    }
    let current: Option<(bool, i64, i64, i64)> = c
        .query_row(
            "SELECT ended, expires_at, max_signatures, used FROM sessions WHERE token_hash = ?1",
            [&charge.token_hash],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()
        .map_err(unavailable)?;
    Ok(match current {
        None | Some((true, ..)) => QuotaOutcome::Unknown,
        Some((_, expires_at, ..)) if expires_at <= charge.now => QuotaOutcome::Expired,
        Some((_, _, max, used)) => QuotaOutcome::Exhausted {
            remaining: max.saturating_sub(used).max(0) as u64,
        },
    })
}

/// Charges quotas and appends leaves and the Merkle nodes they complete, in one transaction.
pub(super) fn append_batch(
    c: &mut Connection,
    batch: &[LogAppend],
) -> Result<Vec<AppendOutcome>, StoreError> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let mut next = log_size(&tx)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut written: HashMap<(u32, u64), Hash> = HashMap::new();
    {
        let mut insert_entry = tx
            .prepare_cached("INSERT INTO log_entries (idx, leaf, leaf_hash) VALUES (?1, ?2, ?3)")
            .map_err(unavailable)?;
        let mut insert_node = tx
            .prepare_cached("INSERT INTO log_nodes (level, last_leaf, hash) VALUES (?1, ?2, ?3)")
            .map_err(unavailable)?;
        let mut read_node = tx
            .prepare_cached("SELECT hash FROM log_nodes WHERE level = ?1 AND last_leaf = ?2")
            .map_err(unavailable)?;
        let mut active_state = tx
            .prepare_cached("SELECT state FROM key_versions WHERE key = ?1 AND version = ?2")
            .map_err(unavailable)?;
        // Whether each (key, version) is active, read once per commit: a commit serves many
        // signatures of a few versions. A key change in the commit clears it.
        let mut active: HashMap<&(String, u32), bool> = HashMap::new();
        for item in batch {
            if item.key_change.is_some() {
                active.clear();
            }
            // Signatures name the version that made them: it must still be active here, at their
            // place in the log, whichever process deactivated it (a break-glass rotation).
            if let Some(signing) = &item.signing_version {
                let is_active = match active.get(signing) {
                    Some(known) => *known,
                    None => {
                        let state: Option<String> = active_state
                            .query_row(params![signing.0, signing.1], |row| row.get(0))
                            .optional()
                            .map_err(unavailable)?;
                        let known = state.as_deref() == Some("active");
                        active.insert(signing, known);
                        known
                    }
                };
                if !is_active {
                    let (key, version) = signing;
                    outcomes.push(AppendOutcome::Stale(format!(
                        "key {key} version {version} is no longer active"
                    )));
                    continue;
                }
            }
            if let Some(change) = &item.key_change
                && let Err(reason) = apply_key_change(&tx, change, next)?
            {
                outcomes.push(AppendOutcome::Stale(reason));
                continue;
            }
            let remaining = match &item.charge {
                None => None,
                Some(charge) => match charge_quota(&tx, charge)? {
                    QuotaOutcome::Reserved { remaining } => Some(remaining),
                    refused => {
                        outcomes.push(AppendOutcome::Refused(refused));
                        continue;
                    }
                },
            };
            outcomes.push(AppendOutcome::Appended {
                first_index: next,
                remaining,
            });
            for leaf in &item.leaves {
                let index = next;
                next += 1;
                let hash = merkle::leaf_hash(leaf);
                insert_entry
                    .execute(params![to_i64(index), leaf, hash.as_slice()])
                    .map_err(unavailable)?;
                let writes = merkle::append_nodes(index, hash, |level, position| {
                    if let Some(hash) = written.get(&(level, position)) {
                        return Ok(*hash);
                    }
                    let stored: Option<Vec<u8>> = read_node
                        .query_row(params![level, last_leaf(level, position)], |row| row.get(0))
                        .optional()
                        .map_err(unavailable)?;
                    to_hash(stored.ok_or_else(|| {
                        StoreError::Corrupt(format!("log node ({level}, {position}) is missing"))
                    })?)
                })?;
                for (level, position, hash) in writes {
                    insert_node
                        .execute(params![level, last_leaf(level, position), hash.as_slice()])
                        .map_err(unavailable)?;
                    written.insert((level, position), hash);
                }
            }
        }
    }
    tx.commit().map_err(unavailable)?;
    Ok(outcomes)
}

/// Applies a key change inside the log's transaction; `Ok(Err(reason))` when it no longer applies.
/// Preconditions are checked before anything is written.
pub(super) fn apply_key_change(
    tx: &Connection,
    change: &KeyChange,
    log_index: u64,
) -> Result<Result<(), String>, StoreError> {
    let state_of = |key: &str, version: u32| -> Result<Option<(String, String)>, StoreError> {
        tx.query_row(
            "SELECT state, backend_ref FROM key_versions WHERE key = ?1 AND version = ?2",
            params![key, version],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(unavailable)
    };
    match change {
        KeyChange::Activate {
            key,
            version,
            retire_at,
            now,
        } => {
            match state_of(key, *version)? {
                Some((state, backend_ref)) if state == "pending" && !backend_ref.is_empty() => {}
                other => {
                    return Ok(Err(format!(
                        "key {key} version {version} is not a pending version with a backend key ({other:?})"
                    )));
                }
            }
            tx.execute(
                "UPDATE key_versions SET state = 'verify-only', retire_at = ?2 WHERE key = ?1 AND state = 'active'",
                params![key, retire_at],
            )
            .map_err(unavailable)?;
            tx.execute(
                "UPDATE key_versions SET state = 'active', created_at = ?3, log_index = ?4 WHERE key = ?1 AND version = ?2",
                params![key, version, now, to_i64(log_index)],
            )
            .map_err(unavailable)?;
        }
        KeyChange::Retire { key, version } => {
            match state_of(key, *version)? {
                Some((state, _)) if state == "verify-only" => {}
                other => {
                    return Ok(Err(format!(
                        "key {key} version {version} is not verify-only ({other:?})"
                    )));
                }
            }
            tx.execute(
                "UPDATE key_versions SET state = 'retired' WHERE key = ?1 AND version = ?2",
                params![key, version],
            )
            .map_err(unavailable)?;
        }
        KeyChange::Revoke {
            key,
            version,
            compromised_since,
        } => {
            match state_of(key, *version)? {
                Some((state, _)) if state == "verify-only" || state == "retired" => {}
                other => {
                    return Ok(Err(format!(
                        "key {key} version {version} is not verify-only or retired ({other:?})"
                    )));
                }
            }
            let changed = tx
                .execute(
                    "UPDATE key_versions SET state = 'retired', revoked_index = ?3, compromised_since = ?4 \
                     WHERE key = ?1 AND version = ?2 AND revoked_index IS NULL",
                    params![key, version, to_i64(log_index), compromised_since],
                )
                .map_err(unavailable)?;
            if changed == 0 {
                return Ok(Err(format!(
                    "key {key} version {version} is already revoked"
                )));
            }
        }
        KeyChange::Abandon { key, version } => {
            match state_of(key, *version)? {
                Some((state, _)) if state == "pending" => {}
                other => {
                    return Ok(Err(format!(
                        "key {key} version {version} is not pending ({other:?})"
                    )));
                }
            }
            tx.execute(
                "DELETE FROM key_versions WHERE key = ?1 AND version = ?2",
                params![key, version],
            )
            .map_err(unavailable)?;
        }
    }
    Ok(Ok(()))
}

pub(super) fn log_size(c: &Connection) -> Result<u64, StoreError> {
    let next: i64 = c
        .query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries",
            [],
            |row| row.get(0),
        )
        .map_err(unavailable)?;
    u64::try_from(next).map_err(|_| StoreError::Corrupt("negative log size".into()))
}

pub(super) fn to_hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
}

/// The last leaf covered by the perfect subtree `(level, index)`, the key it is stored under.
pub(super) fn last_leaf(level: u32, index: u64) -> i64 {
    let last = index
        .checked_add(1)
        .and_then(|n| n.checked_shl(level))
        .map_or(u64::MAX, |n| n - 1);
    to_i64(last)
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
