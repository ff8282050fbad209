//! Scheduled work: rotations by `rotation_period`, retirements at `retire_at`, and pending
//! versions left over, with back-off for work that keeps failing.
use super::*;

/// Back-off for scheduled work that keeps failing: each failure may leave a log entry (a
/// rolled-back rotation) and a key in the backend, so it is not retried every second.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    next_attempt: i64,
    failures: u32,
}
/// First pause after a failed scheduled rotation or retirement; it doubles up to the maximum.
const SCHEDULED_RETRY_FIRST_SECONDS: i64 = 60;
const SCHEDULED_RETRY_MAX_SECONDS: i64 = 3600;
/// A pending version older than this is left over (its request cut off, or the store down
/// while cleaning up), not a rotation in progress: longer than any backend deadline.
pub(super) const STALE_PENDING_SECONDS: i64 = 600;

impl Backoff {
    pub(super) fn due(&self, now: i64) -> bool {
        now >= self.next_attempt
    }

    pub(super) fn record(&mut self, succeeded: bool, now: i64) {
        if succeeded {
            *self = Backoff::default();
            return;
        }
        let pause = SCHEDULED_RETRY_FIRST_SECONDS
            .saturating_mul(1 << self.failures.min(6))
            .min(SCHEDULED_RETRY_MAX_SECONDS);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = now.saturating_add(pause);
    }
}
impl KeyRing {
    /// Scheduled work that is due: rotations by `rotation_period` (from the active version's
    /// activation time, in the store) and retirements at `retire_at`. The store's commits make
    /// each happen once, whichever task or replica gets there first.
    pub async fn run_due(&self, context: &KeyContext<'_>) {
        let now = context.clock.now_unix();
        for key in self.keys.values() {
            if self.is_log_key(&key.config.name) {
                continue;
            }
            if key.rotation_backoff.lock().is_ok_and(|b| b.due(now)) {
                let succeeded = self.rotate_if_due(key, now, context).await;
                if let Ok(mut backoff) = key.rotation_backoff.lock() {
                    backoff.record(succeeded, now);
                }
            }
            if key.retirement_backoff.lock().is_ok_and(|b| b.due(now)) {
                let succeeded = self.retire_due(key, now, context).await;
                if let Ok(mut backoff) = key.retirement_backoff.lock() {
                    backoff.record(succeeded, now);
                }
            }
        }
    }

    /// Settles rotations left pending, and rotates when `rotation_period` has elapsed; false
    /// when something failed (it is retried after a pause).
    pub(super) async fn rotate_if_due(
        &self,
        key: &ManagedKey,
        now: i64,
        context: &KeyContext<'_>,
    ) -> bool {
        let name = &key.config.name;
        let left_over = PendingVersions::TakenBefore(now.saturating_sub(STALE_PENDING_SECONDS));
        let has_left_over = key
            .versions()
            .iter()
            .any(|v| v.state == KeyState::Pending && left_over.includes(v));
        let due = |key: &ManagedKey| {
            let period = key.config.rotation_period.as_ref()?;
            let period = i64::try_from(period.get().as_secs()).unwrap_or(i64::MAX);
            key.active_record()
                .map(|active| active.created_at.saturating_add(period) <= now)
        };
        if !has_left_over && due(key) != Some(true) {
            return true;
        }
        let _one_at_a_time = key.changing.lock().await;
        let mut succeeded = true;
        if has_left_over {
            let when = "by the scheduler, after it was left pending";
            if let Err(e) = self
                .recover_interrupted_rotation(key, context, left_over, &Actor::Scheduler, when)
                .await
            {
                tracing::warn!(key = %name, error = %e, "could not settle a rotation left pending; will retry after a pause");
                succeeded = false;
            }
        }
        // Checked again under the lock: a rotation that just finished here (an admin's, say)
        // moved the due date.
        if let Err(e) = self.reload_key(key, context.store).await {
            tracing::warn!(key = %name, error = %e, "could not reread the key's versions");
            return false;
        }
        if due(key) == Some(true)
            && let Err(e) = self
                .rotate_locked(
                    key,
                    &Actor::Scheduler,
                    "scheduled: rotation_period elapsed",
                    context,
                )
                .await
        {
            tracing::warn!(key = %name, error = %e, "scheduled rotation failed; will retry after a pause");
            succeeded = false;
        }
        succeeded
    }

    /// Retires verify-only versions whose grace period is over; false when one failed.
    pub(super) async fn retire_due(
        &self,
        key: &ManagedKey,
        now: i64,
        context: &KeyContext<'_>,
    ) -> bool {
        let name = &key.config.name;
        let mut succeeded = true;
        for version in key.versions() {
            if version.state == KeyState::VerifyOnly
                && version.retire_at.is_some_and(|at| at <= now)
                && let Err(e) = self
                    .retire(
                        name,
                        version.version,
                        &Actor::Scheduler,
                        "grace period over",
                        context,
                    )
                    .await
            {
                tracing::warn!(key = %name, version = version.version, error = %e, "scheduled retirement failed; will retry after a pause");
                succeeded = false;
            }
        }
        succeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_work_backs_off_after_failures_and_resets_on_success() {
        let mut backoff = Backoff::default();
        assert!(backoff.due(0));
        backoff.record(false, 1_000);
        assert!(!backoff.due(1_059));
        assert!(backoff.due(1_060));
        backoff.record(false, 1_060);
        assert_eq!(backoff.next_attempt, 1_060 + 120);
        for _ in 0..20 {
            backoff.record(false, 5_000);
        }
        assert_eq!(backoff.next_attempt, 5_000 + SCHEDULED_RETRY_MAX_SECONDS);
        backoff.record(true, 6_000);
        assert!(backoff.due(6_000));
        assert_eq!(backoff.failures, 0);
    }
}
