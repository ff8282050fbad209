//! How signatures reach the log before they are returned: [`Logged`], always, in every build a
//! user runs. Benchmark builds (`bench-unlogged`) can start with a recorder that skips the log,
//! chosen once at start-up, so the signing handler has no benchmark branch.
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;

use super::event::LogEvent;
use super::{Log, LogError};
use crate::store::{AppendOutcome, QuotaCharge};

/// The events of one signed batch, built only by a recorder that logs them.
pub type EventBuilder<'a> = &'a (dyn Fn() -> Result<Vec<LogEvent>, LogError> + Send + Sync);

/// Records a signed batch with its quota charge.
#[async_trait]
pub trait SignatureRecorder: Send + Sync + std::fmt::Debug {
    /// Charges `charge` and records the batch signed by `version` of `key`, durably, in one
    /// commit. `quota_seen` is this replica's count of the session's signatures.
    async fn record(
        &self,
        log: &Log,
        charge: QuotaCharge,
        key: &str,
        version: u32,
        events: EventBuilder<'_>,
        quota_seen: &AtomicU64,
    ) -> Result<AppendOutcome, LogError>;
}

/// Every signature is a log entry, committed with the quota charge.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logged;

#[async_trait]
impl SignatureRecorder for Logged {
    async fn record(
        &self,
        log: &Log,
        charge: QuotaCharge,
        key: &str,
        version: u32,
        events: EventBuilder<'_>,
        _quota_seen: &AtomicU64,
    ) -> Result<AppendOutcome, LogError> {
        log.append_signatures(charge, key, version, &events()?)
            .await
    }
}

/// Benchmark builds only: signing without the log, to measure what the log costs.
#[cfg(feature = "bench-unlogged")]
pub mod unlogged {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;

    use super::{EventBuilder, SignatureRecorder};
    use crate::log::{Log, LogError};
    use crate::store::{AppendOutcome, QuotaCharge};

    /// What replaces the log append (`SIGNET_BENCH_UNLOGGED=quota|memory`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Unlogged {
        /// The quota is charged in the store's group commit (durable), with no log entry.
        Quota,
        /// The quota is charged in memory only: no store write at all.
        Memory,
    }

    impl Unlogged {
        /// The mode `SIGNET_BENCH_UNLOGGED` asks for, if any.
        pub fn from_env() -> Option<Unlogged> {
            match std::env::var("SIGNET_BENCH_UNLOGGED").as_deref() {
                Ok("quota") => Some(Unlogged::Quota),
                Ok("memory") => Some(Unlogged::Memory),
                _ => None,
            }
        }
    }

    #[async_trait]
    impl SignatureRecorder for Unlogged {
        async fn record(
            &self,
            log: &Log,
            charge: QuotaCharge,
            _key: &str,
            _version: u32,
            _events: EventBuilder<'_>,
            quota_seen: &AtomicU64,
        ) -> Result<AppendOutcome, LogError> {
            match self {
                Unlogged::Memory => {
                    quota_seen.fetch_add(charge.count, Ordering::Relaxed);
                    Ok(AppendOutcome::Appended {
                        first_index: 0,
                        remaining: None,
                    })
                }
                Unlogged::Quota => log.charge(charge).await,
            }
        }
    }
}
