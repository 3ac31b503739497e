//! The worker's Prometheus metrics, served on `--metrics-listen` when it is set.
//!
//! Counters are atomics bumped where things happen; gauges that describe state (slots in use,
//! spool size, upload lag) are read when scraped, so they cannot drift from what they describe.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cronfleet_common::MissReason;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::holds::{Hold, Holds};
use crate::spool::Spool;

/// Upper bounds of the run duration histogram, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// How a claim txn (or a skip or miss txn) came out.
#[derive(Debug, Clone, Copy)]
pub enum TxnResult {
    /// It moved the guard: this worker starts, skips or records the tick.
    Won,
    /// Another worker had moved the guard first.
    Lost,
    /// The lock was held (`forbid`), checked ahead of the planned time.
    Locked,
    /// etcd did not answer.
    Failed,
}

/// Every counter and gauge the worker exports.
#[derive(Debug, Default)]
pub struct Metrics {
    txns: [AtomicU64; 4],
    /// etcd requests that carried claim, skip, miss and release txns.
    requests: AtomicU64,
    started: AtomicU64,
    skipped: AtomicU64,
    missed: [AtomicU64; MissReason::ALL.len()],
    /// Ticks given up without a record, because go-crontab workers may have run them.
    unrecorded: AtomicU64,
    queue_depth: AtomicUsize,
    durations: [AtomicU64; DURATION_BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    /// Moving average of how long etcd takes to answer a claim txn, in microseconds.
    claim_latency_micros: AtomicU64,
    /// Txns this worker has sent and etcd has not answered yet.
    txns_in_flight: AtomicUsize,
    /// How far the fleet's clock is from this worker's, in milliseconds.
    clock_offset_ms: AtomicI64,
}

/// A txn counted in flight; counted out when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn txn(&self, result: TxnResult) {
        self.txns[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_clock_offset(&self, offset_ms: i64) {
        self.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    pub fn request_sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Folds one claim txn's round trip into the moving average (weight 1/8).
    pub fn claim_answered(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.claim_latency_micros.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |average| {
                Some(if average == 0 {
                    sample
                } else {
                    average - average / 8 + sample / 8
                })
            },
        );
    }

    /// Counts a txn out until the returned guard is dropped (answered or given up).
    pub fn txn_sent(&self) -> InFlight<'_> {
        self.txns_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.txns_in_flight)
    }

    /// Txns this worker has sent and etcd has not answered yet.
    pub fn txns_in_flight(&self) -> usize {
        self.txns_in_flight.load(Ordering::Relaxed)
    }

    /// The moving average of claim txn round trips.
    pub fn claim_latency(&self) -> Duration {
        Duration::from_micros(self.claim_latency_micros.load(Ordering::Relaxed))
    }

    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn missed(&self, reason: MissReason) {
        let index = MissReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        self.missed[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn unrecorded(&self, ticks: usize) {
        self.unrecorded
            .fetch_add(u64::try_from(ticks).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    pub fn run_ended(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        for (bucket, bound) in self.durations.iter().zip(DURATION_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, state: &Gauges) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let slots = state.slots;
        let free = state.permits.available_permits();
        metric(
            "cronfleet_worker_slots",
            "gauge",
            "Most runs this worker executes at once (--slots).",
            &[(String::new(), slots as f64)],
        );
        metric(
            "cronfleet_worker_slots_in_use",
            "gauge",
            "Slots held by runs and by claims about to start one.",
            &[(String::new(), slots.saturating_sub(free) as f64)],
        );
        metric(
            "cronfleet_worker_txns_in_flight",
            "gauge",
            "Claim, skip, miss and release txns sent and not answered yet.",
            &[(String::new(), self.txns_in_flight() as f64)],
        );
        metric(
            "cronfleet_worker_queue_depth",
            "gauge",
            "Due ticks waiting on this worker for their turn or a free slot.",
            &[(
                String::new(),
                self.queue_depth.load(Ordering::Relaxed) as f64,
            )],
        );
        let txns = ["won", "lost", "locked", "failed"]
            .iter()
            .zip(&self.txns)
            .map(|(result, counter)| (format!("{{result=\"{result}\"}}"), load(counter) as f64))
            .collect::<Vec<_>>();
        metric(
            "cronfleet_worker_claim_txns_total",
            "counter",
            "Claim, skip and miss transactions sent to etcd, by result.",
            &txns,
        );
        metric(
            "cronfleet_worker_etcd_requests_total",
            "counter",
            "etcd requests that carried claim, skip, miss and release txns (several to a request under load).",
            &[(String::new(), load(&self.requests) as f64)],
        );
        metric(
            "cronfleet_worker_claim_latency_seconds",
            "gauge",
            "Moving average of etcd's answer time to a claim txn; hand-offs wait twice this.",
            &[(String::new(), self.claim_latency().as_secs_f64())],
        );
        metric(
            "cronfleet_worker_ticks_started_total",
            "counter",
            "Ticks this worker claimed and started.",
            &[(String::new(), load(&self.started) as f64)],
        );
        metric(
            "cronfleet_worker_ticks_skipped_total",
            "counter",
            "Ticks this worker recorded as skipped (forbid, lock held).",
            &[(String::new(), load(&self.skipped) as f64)],
        );
        let missed = MissReason::ALL
            .iter()
            .zip(&self.missed)
            .map(|(reason, counter)| {
                (
                    format!("{{reason=\"{}\"}}", reason.as_str()),
                    load(counter) as f64,
                )
            })
            .collect::<Vec<_>>();
        metric(
            "cronfleet_worker_ticks_missed_total",
            "counter",
            "Ticks this worker recorded as missed, by reason.",
            &missed,
        );
        metric(
            "cronfleet_worker_ticks_unrecorded_total",
            "counter",
            "Ticks nobody in this fleet started that were left unrecorded, because go-crontab \
             workers were registered and may have run them.",
            &[(String::new(), load(&self.unrecorded) as f64)],
        );
        let mut histogram: Vec<(String, f64)> = DURATION_BUCKETS
            .iter()
            .zip(&self.durations)
            .map(|(bound, counter)| (format!("_bucket{{le=\"{bound}\"}}"), load(counter) as f64))
            .collect();
        let count = load(&self.duration_count) as f64;
        histogram.push(("_bucket{le=\"+Inf\"}".to_owned(), count));
        histogram.push((
            "_sum".to_owned(),
            load(&self.duration_sum_micros) as f64 / 1e6,
        ));
        histogram.push(("_count".to_owned(), count));
        metric(
            "cronfleet_worker_run_duration_seconds",
            "histogram",
            "How long runs took, start to end.",
            &histogram,
        );
        let holds = state.holds.current();
        metric(
            "cronfleet_worker_claiming",
            "gauge",
            "1 while this worker claims ticks; 0 while a hold stops it (see cronfleet_worker_hold).",
            &[(String::new(), if holds.is_empty() { 1.0 } else { 0.0 })],
        );
        let held = Hold::ALL
            .iter()
            .map(|hold| {
                let on = if holds.contains(hold) { 1.0 } else { 0.0 };
                (format!("{{reason=\"{}\"}}", hold.as_str()), on)
            })
            .collect::<Vec<_>>();
        metric(
            "cronfleet_worker_hold",
            "gauge",
            "1 for each reason this worker has stopped claiming: records_blocked, clock_skew.",
            &held,
        );
        metric(
            "cronfleet_worker_clock_offset_seconds",
            "gauge",
            "How far the fleet's clock (the median of the workers') is from this worker's; 0 until known.",
            &[(
                String::new(),
                self.clock_offset_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            )],
        );
        let (bytes, oldest) = spool_state(&state.spool_dir);
        metric(
            "cronfleet_worker_spool_bytes",
            "gauge",
            "Bytes of execution records in the spool, waiting for MongoDB.",
            &[(String::new(), bytes as f64)],
        );
        metric(
            "cronfleet_worker_upload_lag_seconds",
            "gauge",
            "Age of the oldest spooled segment MongoDB does not have yet; 0 when none waits.",
            &[(String::new(), oldest.as_secs_f64())],
        );
        out
    }
}

/// What the scrape reads besides the counters.
#[derive(Debug, Clone)]
pub struct Gauges {
    pub slots: usize,
    pub permits: Arc<Semaphore>,
    pub spool_dir: PathBuf,
    pub holds: Holds,
}

/// Total size of the spool's files and the age of its oldest sealed segment.
fn spool_state(dir: &std::path::Path) -> (u64, Duration) {
    let bytes = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0);
    let now = SystemTime::now();
    let oldest = Spool::sealed(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .filter_map(|modified| now.duration_since(modified).ok())
        .max()
        .unwrap_or_default();
    (bytes, oldest)
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((metrics, gauges));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "the metrics endpoint stopped");
    }
}

async fn scrape(State((metrics, gauges)): State<(Arc<Metrics>, Gauges)>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(&gauges),
    )
}

/// Reads `--metrics-listen`: `host:port`, or a bare port on the loopback address.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = raw.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    raw.parse()
        .map_err(|_| format!("{raw:?} is neither a port nor an address like 127.0.0.1:9464"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let metrics = Metrics::default();
        metrics.txn(TxnResult::Won);
        metrics.txn(TxnResult::Won);
        metrics.txn(TxnResult::Lost);
        metrics.missed(MissReason::NoFreeSlot);
        metrics.run_ended(Duration::from_millis(30));
        metrics.set_queue_depth(7);
        let permits = Arc::new(Semaphore::new(4));
        let _held = Arc::clone(&permits).try_acquire_many_owned(3).unwrap();
        let holds = Holds::default();
        holds.set(Hold::RecordsBlocked, true, "test");
        let text = metrics.render(&Gauges {
            slots: 4,
            permits,
            spool_dir: PathBuf::from("/nonexistent"),
            holds,
        });
        for line in [
            "cronfleet_worker_claim_txns_total{result=\"won\"} 2",
            "cronfleet_worker_claim_txns_total{result=\"lost\"} 1",
            "cronfleet_worker_ticks_missed_total{reason=\"no_free_slot\"} 1",
            "cronfleet_worker_ticks_missed_total{reason=\"no_worker\"} 0",
            "cronfleet_worker_slots_in_use 3",
            "cronfleet_worker_queue_depth 7",
            "cronfleet_worker_run_duration_seconds_bucket{le=\"0.01\"} 0",
            "cronfleet_worker_run_duration_seconds_bucket{le=\"0.05\"} 1",
            "cronfleet_worker_run_duration_seconds_bucket{le=\"+Inf\"} 1",
            "cronfleet_worker_run_duration_seconds_count 1",
            "cronfleet_worker_spool_bytes 0",
            "cronfleet_worker_claiming 0",
            "cronfleet_worker_hold{reason=\"records_blocked\"} 1",
            "cronfleet_worker_hold{reason=\"clock_skew\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn a_txn_counts_in_flight_until_its_guard_is_dropped() {
        let metrics = Metrics::default();
        let first = metrics.txn_sent();
        let second = metrics.txn_sent();
        assert_eq!(metrics.txns_in_flight(), 2);
        drop(first);
        assert_eq!(metrics.txns_in_flight(), 1);
        drop(second);
        assert_eq!(metrics.txns_in_flight(), 0);
    }

    #[test]
    fn claim_latency_follows_the_answers() {
        let metrics = Metrics::default();
        metrics.claim_answered(Duration::from_millis(8));
        assert_eq!(metrics.claim_latency(), Duration::from_millis(8));
        for _ in 0..64 {
            metrics.claim_answered(Duration::from_millis(200));
        }
        let settled = metrics.claim_latency();
        assert!(settled > Duration::from_millis(190), "{settled:?}");
        assert!(settled <= Duration::from_millis(200), "{settled:?}");
    }

    #[test]
    fn listen_takes_a_port_or_an_address() {
        assert_eq!(parse_listen("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(
            parse_listen("0.0.0.0:9000").unwrap().to_string(),
            "0.0.0.0:9000"
        );
        assert!(parse_listen("localhost").is_err());
    }
}
