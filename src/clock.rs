//! Time, injected: the daemon reads it only through [`Clock`], so tests run it on a
//! [`ManualClock`] and advance time instead of sleeping.
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_unix_millis(&self) -> i64;

    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        self.now_unix_millis().div_euclid(1000)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_millis(&self) -> i64 {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        i64::try_from(now).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to: the time of in-process tests.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at the system's current time.
    pub fn starting_now() -> ManualClock {
        ManualClock::at(SystemClock.now_unix_millis())
    }

    /// A clock stopped at `unix_millis`.
    pub fn at(unix_millis: i64) -> ManualClock {
        ManualClock {
            millis: AtomicI64::new(unix_millis),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// RFC 3339 text of a Unix time (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}
