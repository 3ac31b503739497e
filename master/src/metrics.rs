//! Prometheus metrics in text format: requests by route and status, request latency, events
//! appended, the projector's lag behind the log, and — on the master that runs the notifier —
//! runs by status, notifications sent and failed, and the notifier's lag behind the records.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{Method, StatusCode};

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// The master's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    events_appended: AtomicU64,
    runs: Mutex<BTreeMap<String, u64>>,
    notifications_sent: AtomicU64,
    notifications_failed: AtomicU64,
    notifier_lag_secs: AtomicI64,
}

impl Metrics {
    /// Records one request.
    pub fn request(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let key = (
            method.as_str().to_owned(),
            route.to_owned(),
            status.as_u16(),
        );
        *lock(&self.requests).entry(key).or_default() += 1;
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(route.to_owned()).or_default();
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.sum += seconds;
        histogram.total += 1;
    }

    pub fn events_appended(&self, count: usize) {
        self.events_appended
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    /// One execution record read by the notifier, counted once.
    pub fn run_recorded(&self, status: &str) {
        *lock(&self.runs).entry(status.to_owned()).or_default() += 1;
    }

    pub fn notification_sent(&self) {
        self.notifications_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// One failed try of a delivery.
    pub fn notification_failed(&self) {
        self.notifications_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn notifier_lag(&self, secs: i64) {
        self.notifier_lag_secs.store(secs, Ordering::Relaxed);
    }

    fn render_outcomes(&self, out: &mut String) {
        out.push_str("# HELP cronfleet_runs_total Execution records read by this master's notifier, by status.\n");
        out.push_str("# TYPE cronfleet_runs_total counter\n");
        for (status, count) in lock(&self.runs).iter() {
            let _ = writeln!(out, "cronfleet_runs_total{{status=\"{status}\"}} {count}");
        }
        for (name, help, value) in [
            (
                "cronfleet_notifications_sent_total",
                "Notifications delivered (a 2xx answer, or mail accepted by the relay).",
                &self.notifications_sent,
            ),
            (
                "cronfleet_notifications_failed_total",
                "Delivery tries that failed (each is tried again until it is given up).",
                &self.notifications_failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out.push_str("# HELP cronfleet_notifier_lag_seconds Seconds since the notifier last read up to the newest execution record (about zero while it keeps up).\n");
        out.push_str("# TYPE cronfleet_notifier_lag_seconds gauge\n");
        let _ = writeln!(
            out,
            "cronfleet_notifier_lag_seconds {}",
            self.notifier_lag_secs.load(Ordering::Relaxed)
        );
    }

    /// The text exposition.
    pub fn render(&self, lag: Option<i64>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP cronfleet_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE cronfleet_http_requests_total counter\n");
        for ((method, route, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(out, "cronfleet_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}");
        }
        out.push_str(
            "# HELP cronfleet_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE cronfleet_http_request_duration_seconds histogram\n");
        for (route, histogram) in lock(&self.latency).iter() {
            for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter()) {
                let _ = writeln!(out, "cronfleet_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "cronfleet_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", histogram.total);
            let _ = writeln!(
                out,
                "cronfleet_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "cronfleet_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.total
            );
        }
        out.push_str(
            "# HELP cronfleet_events_appended_total Events appended to the log by this master.\n",
        );
        out.push_str("# TYPE cronfleet_events_appended_total counter\n");
        let _ = writeln!(
            out,
            "cronfleet_events_appended_total {}",
            self.events_appended.load(Ordering::Relaxed)
        );
        out.push_str("# HELP cronfleet_projector_lag_events Events in the log not yet projected into etcd.\n");
        out.push_str("# TYPE cronfleet_projector_lag_events gauge\n");
        match lag {
            Some(lag) => {
                let _ = writeln!(out, "cronfleet_projector_lag_events {lag}");
            }
            None => out.push_str("cronfleet_projector_lag_events NaN\n"),
        }
        self.render_outcomes(&mut out);
        out
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single map update; a poisoned lock holds consistent data.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
