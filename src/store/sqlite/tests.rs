//! The SQLite store against a real file: quota with log entries, reopening, a bounded WAL.
use super::*;
use crate::store::{QuotaCharge, QuotaOutcome};

fn session(hash: &str, max: u64) -> SessionRecord {
    SessionRecord {
        token_hash: hash.into(),
        session_id: "0123".into(),
        issuer: "ci".into(),
        iss: "https://ci.example".into(),
        claims: [("repository".to_string(), serde_json::json!("acme/models"))]
            .into_iter()
            .collect(),
        subject: "repo:acme/models".into(),
        policy: "release".into(),
        keys: vec!["model-signing".into()],
        created_at: 100,
        expires_at: 200,
        max_signatures: max,
        used: 0,
        ended: false,
    }
}

#[tokio::test]
async fn quota_is_charged_with_the_log_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
    store
        .create_session(&session("h", 3))
        .await
        .expect("create");
    let charge = |hash: &str, count: u64, now: i64| LogAppend {
        charge: Some(QuotaCharge {
            token_hash: hash.into(),
            count,
            now,
        }),
        key_change: None,
        signing_version: None,
        leaves: (0..count)
            .map(|i| format!("leaf {i}").into_bytes())
            .collect(),
    };
    // One commit: the second charge no longer fits, the third does; refused ones append nothing.
    let outcomes = store
        .append_log_blocking(vec![
            charge("h", 2, 150),
            charge("h", 2, 150),
            charge("h", 1, 150),
        ])
        .expect("append");
    assert_eq!(
        outcomes,
        vec![
            AppendOutcome::Appended {
                first_index: 0,
                remaining: Some(1)
            },
            AppendOutcome::Refused(QuotaOutcome::Exhausted { remaining: 1 }),
            AppendOutcome::Appended {
                first_index: 2,
                remaining: Some(0)
            },
        ]
    );
    assert_eq!(store.log_size().await, Ok(3));
    let outcomes = store
        .append_log_blocking(vec![
            charge("h", 1, 250),
            charge("nope", 1, 150),
            LogAppend {
                charge: None,
                key_change: None,
                signing_version: None,
                leaves: vec![b"x".to_vec()],
            },
        ])
        .expect("append");
    assert_eq!(
        outcomes,
        vec![
            AppendOutcome::Refused(QuotaOutcome::Expired),
            AppendOutcome::Refused(QuotaOutcome::Unknown),
            AppendOutcome::Appended {
                first_index: 3,
                remaining: None
            },
        ]
    );
    assert!(store.end_session("h").await.expect("end"));
    let outcomes = store
        .append_log_blocking(vec![charge("h", 0, 150)])
        .expect("append");
    assert_eq!(
        outcomes,
        vec![AppendOutcome::Refused(QuotaOutcome::Unknown)]
    );
}

#[tokio::test]
async fn sessions_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    {
        let store = SqliteStore::open(&path).await.expect("open");
        store
            .create_session(&session("h", 3))
            .await
            .expect("create");
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        store.session("h").await.expect("read"),
        Some(session("h", 3))
    );
}

/// Under steady appends the WAL must stay bounded: it is restarted from its start after the
/// writer's checkpoints, instead of growing by every commit.
#[tokio::test(flavor = "multi_thread")]
async fn wal_stays_bounded_under_steady_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).await.expect("open");
    const COMMITS: usize = 2_000;
    let writer = store.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..COMMITS {
            let leaf = format!("{i:0600}").into_bytes();
            writer
                .append_log_blocking(vec![LogAppend {
                    charge: None,
                    key_change: None,
                    signing_version: None,
                    leaves: vec![leaf],
                }])
                .expect("append");
            writer.after_append_blocking();
        }
    })
    .await
    .expect("appends");
    assert_eq!(store.log_size().await, Ok(COMMITS as u64));
    let wal = std::fs::metadata(dir.path().join("s.db-wal"))
        .expect("WAL file")
        .len();
    // Each commit writes at least two 4 KiB pages (entry and node), so 2,000 commits make
    // 16 MB of WAL unless it restarts; a restart every 256 commits keeps it near 3 MB.
    assert!(wal < 6 << 20, "WAL grew to {wal} bytes");
}
