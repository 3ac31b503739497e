//! The runs this worker is executing right now, and the handles to stop them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use cronfleet_common::values::RunSummary;
use cronfleet_common::JobName;
use tokio::sync::watch;

/// Why a run is being stopped before it ends on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A kill request arrived on `killer/<job>`.
    KillRequested,
    /// A newer run took the lock under `replace` concurrency.
    Replaced,
    /// The worker is shutting down and the grace period ran out.
    Shutdown,
    /// The worker's lease was lost, so its lock can no longer be proven held.
    LeaseLost,
}

impl StopReason {
    /// The `err` text of the execution record.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::KillRequested => "killed on request",
            StopReason::Replaced => "killed: replaced by a newer run (concurrency: replace)",
            StopReason::Shutdown => "killed: the worker shut down before the run ended",
            StopReason::LeaseLost => "killed: the worker lost its etcd lease, so its lock was gone",
        }
    }
}

#[derive(Debug)]
struct Entry {
    job: JobName,
    summary: RunSummary,
    claim_revision: i64,
    stop: watch::Sender<Option<StopReason>>,
}

/// Shared table of running runs.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

impl Runs {
    fn table(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated (every critical
        // section is a single map operation), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a run; the receiver tells the executor when and why to stop it.
    pub fn insert(
        &self,
        job: JobName,
        summary: RunSummary,
        claim_revision: i64,
    ) -> watch::Receiver<Option<StopReason>> {
        let (stop, receiver) = watch::channel(None);
        let run_id = summary.run_id.clone();
        self.table().insert(
            run_id,
            Entry {
                job,
                summary,
                claim_revision,
                stop,
            },
        );
        receiver
    }

    /// Forgets a run that ended.
    pub fn remove(&self, run_id: &str) {
        self.table().remove(run_id);
    }

    /// Stops every run of `job` claimed before `revision` (the kill request's); returns how
    /// many were asked to stop.
    pub fn stop_job(&self, job: &JobName, reason: StopReason, revision: i64) -> usize {
        self.stop_where(reason, |entry| {
            &entry.job == job && entry.claim_revision < revision
        })
    }

    /// Stops runs of `job` whose lock was taken over at `revision` by another run.
    pub fn stop_replaced(&self, job: &JobName, new_holder: &str, revision: i64) -> usize {
        self.stop_where(StopReason::Replaced, |entry| {
            &entry.job == job
                && entry.summary.run_id != new_holder
                && entry.claim_revision < revision
        })
    }

    /// Stops every run.
    pub fn stop_all(&self, reason: StopReason) -> usize {
        self.stop_where(reason, |_| true)
    }

    fn stop_where(&self, reason: StopReason, matches: impl Fn(&Entry) -> bool) -> usize {
        let table = self.table();
        let mut stopped = 0;
        for entry in table.values().filter(|entry| matches(entry)) {
            entry.stop.send_if_modified(|current| {
                let first = current.is_none();
                if first {
                    *current = Some(reason);
                }
                first
            });
            stopped += 1;
        }
        stopped
    }

    /// Whether a run of `job` is in progress here.
    pub fn has_job(&self, job: &JobName) -> bool {
        self.table().values().any(|entry| &entry.job == job)
    }

    /// Number of runs in progress.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether nothing is running.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    /// The runs in progress, oldest first.
    pub fn summaries(&self) -> Vec<RunSummary> {
        let mut all: Vec<RunSummary> = self.table().values().map(|e| e.summary.clone()).collect();
        all.sort_by_key(|s| (s.started_at, s.run_id.clone()));
        all
    }
}
