//! The load generator behind `signet bench`: a closed loop (each of C workers sends its next
//! request when the previous one is answered) for a fixed time, and the latency statistics.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency percentiles and throughput of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Workers.
    pub concurrency: usize,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Successful requests a second.
    pub requests_per_second: f64,
    /// Operations (e.g. signatures) a second, when a request carries several.
    pub operations_per_second: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest request.
    pub max_us: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// The `q`-quantile (0..=1) of sorted samples, by the nearest-rank method.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Builds a report from per-request latencies (µs) of successful requests.
pub fn report(
    concurrency: usize,
    mut latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    operations_per_request: u64,
) -> Report {
    latencies.sort_unstable();
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let requests = latencies.len() as u64;
    Report {
        concurrency,
        requests,
        errors,
        seconds,
        requests_per_second: requests as f64 / seconds,
        operations_per_second: (requests * operations_per_request) as f64 / seconds,
        p50_us: percentile(&latencies, 0.50),
        p90_us: percentile(&latencies, 0.90),
        p99_us: percentile(&latencies, 0.99),
        max_us: latencies.last().copied().unwrap_or(0),
        first_error,
    }
}

/// Runs `concurrency` workers in a closed loop for `duration`: worker `w` calls `request(w)`,
/// waits for it, records its latency, and calls again. Requests still running at the end are
/// awaited and counted.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    duration: Duration,
    operations_per_request: u64,
    request: F,
) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let (request, stop) = (Arc::clone(&request), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match request(worker).await {
                    Ok(()) => latencies.push(sent.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        if let Ok((mut l, e, f)) = worker.await {
            latencies.append(&mut l);
            errors += e;
            if first_error.is_none() {
                first_error = f;
            }
        }
    }
    report(
        concurrency,
        latencies,
        errors,
        first_error,
        started.elapsed(),
        operations_per_request,
    )
}

/// Counts requests in flight, to check a closed loop never exceeds its concurrency.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct InFlight {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl InFlight {
    /// A request starts.
    pub fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    /// A request ends.
    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// The most seen at once.
    pub fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), 50);
        assert_eq!(percentile(&samples, 0.90), 90);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&samples, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        // Ten samples: p99 is the largest, p50 the fifth.
        let ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1000];
        assert_eq!(percentile(&ten, 0.99), 1000);
        assert_eq!(percentile(&ten, 0.50), 5);
    }

    #[test]
    fn report_counts_and_rates() {
        let report = report(
            2,
            vec![300, 100, 200],
            1,
            Some("x".into()),
            Duration::from_secs(2),
            10,
        );
        assert_eq!(report.requests, 3);
        assert_eq!(report.errors, 1);
        assert_eq!(report.requests_per_second, 1.5);
        assert_eq!(report.operations_per_second, 15.0);
        assert_eq!((report.p50_us, report.max_us), (200, 300));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loop_is_closed_and_counts_every_answer() {
        let in_flight = Arc::new(InFlight::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (tracker, counter) = (Arc::clone(&in_flight), Arc::clone(&calls));
        let report = closed_loop(3, Duration::from_millis(200), 1, move |worker| {
            let (tracker, counter) = (Arc::clone(&tracker), Arc::clone(&counter));
            async move {
                tracker.enter();
                let n = counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                tracker.leave();
                // Every fifth call fails, and worker numbers stay within the concurrency.
                assert!(worker < 3);
                if n % 5 == 4 {
                    Err(format!("call {n}"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(
            in_flight.most() <= 3,
            "never more than the concurrency in flight"
        );
        assert_eq!(
            report.requests + report.errors,
            calls.load(Ordering::SeqCst) as u64,
            "every call is counted once"
        );
        assert!(report.errors > 0 && report.first_error.is_some());
    }
}
