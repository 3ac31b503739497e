//! The runs this worker is executing right now, and the handles to stop them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use cronfleet_common::values::RunSummary;
use cronfleet_common::JobName;
use tokio::sync::watch;

/// Why a run is being stopped before it ends on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A kill request arrived on `killer/<job>`, sent by the user or token named, if it says.
    KillRequested(Option<Arc<str>>),
    /// A newer run took the lock under `replace` concurrency.
    Replaced,
    /// The worker is shutting down and the grace period ran out.
    Shutdown,
    /// The worker's lease was lost, so its lock can no longer be proven held.
    LeaseLost,
}

impl StopReason {
    /// The `err` text of the execution record.
    pub fn describe(&self) -> &'static str {
        match self {
            StopReason::KillRequested(_) => "killed on request",
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

/// The latest stop requests seen for a job, kept so that a run claimed before a request but
/// registered after it (its claim txn was in flight, or it waited for its planned time) is
/// stopped as it starts instead of escaping the request.
#[derive(Debug, Default)]
struct Stops {
    /// Revision of the latest kill request, and who sent it.
    killed_at: i64,
    killed_by: Option<Arc<str>>,
    /// The run that took the lock last under `replace`, and the revision it took it at.
    taken: Option<(String, i64)>,
}

#[derive(Debug, Default)]
struct Table {
    runs: HashMap<String, Entry>,
    stops: HashMap<JobName, Stops>,
}

/// Shared table of running runs.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    inner: Arc<Mutex<Table>>,
}

impl Runs {
    fn table(&self) -> MutexGuard<'_, Table> {
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
        let run_id = summary.run_id.clone();
        let mut table = self.table();
        let missed = table.stops.get(&job).and_then(|stops| {
            if stops.killed_at > claim_revision {
                Some(StopReason::KillRequested(stops.killed_by.clone()))
            } else {
                stops
                    .taken
                    .as_ref()
                    .filter(|(holder, at)| *holder != run_id && *at > claim_revision)
                    .map(|_| StopReason::Replaced)
            }
        });
        let (stop, receiver) = watch::channel(missed);
        table.runs.insert(
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
        self.table().runs.remove(run_id);
    }

    /// Forgets the stop requests of a job that was deleted.
    pub fn forget_job(&self, job: &JobName) {
        self.table().stops.remove(job);
    }

    /// Stops every run of `job` claimed before `revision` (the kill request's); returns how
    /// many were asked to stop.
    pub fn stop_job(&self, job: &JobName, reason: StopReason, revision: i64) -> usize {
        let mut table = self.table();
        if let StopReason::KillRequested(by) = &reason {
            let stops = table.stops.entry(job.clone()).or_default();
            if revision > stops.killed_at {
                stops.killed_at = revision;
                stops.killed_by.clone_from(by);
            }
        }
        stop_where(&table, reason, |entry| {
            &entry.job == job && entry.claim_revision < revision
        })
    }

    /// Stops runs of `job` whose lock was taken over at `revision` by another run.
    pub fn stop_replaced(&self, job: &JobName, new_holder: &str, revision: i64) -> usize {
        let mut table = self.table();
        let stops = table.stops.entry(job.clone()).or_default();
        if stops.taken.as_ref().is_none_or(|(_, at)| *at < revision) {
            stops.taken = Some((new_holder.to_owned(), revision));
        }
        stop_where(&table, StopReason::Replaced, |entry| {
            &entry.job == job
                && entry.summary.run_id != new_holder
                && entry.claim_revision < revision
        })
    }

    /// Stops every run.
    pub fn stop_all(&self, reason: StopReason) -> usize {
        stop_where(&self.table(), reason, |_| true)
    }

    /// Whether a run of `job` is in progress here.
    pub fn has_job(&self, job: &JobName) -> bool {
        self.table().runs.values().any(|entry| &entry.job == job)
    }

    /// Number of runs in progress.
    pub fn len(&self) -> usize {
        self.table().runs.len()
    }

    /// Whether nothing is running.
    pub fn is_empty(&self) -> bool {
        self.table().runs.is_empty()
    }

    /// The runs in progress, oldest first.
    pub fn summaries(&self) -> Vec<RunSummary> {
        let mut all: Vec<RunSummary> = self
            .table()
            .runs
            .values()
            .map(|e| e.summary.clone())
            .collect();
        all.sort_by_key(|s| (s.started_at, s.run_id.clone()));
        all
    }
}

fn stop_where(table: &Table, reason: StopReason, matches: impl Fn(&Entry) -> bool) -> usize {
    let mut stopped = 0;
    for entry in table.runs.values().filter(|entry| matches(entry)) {
        entry.stop.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(reason.clone());
            }
            first
        });
        stopped += 1;
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(run_id: &str) -> RunSummary {
        RunSummary {
            run_id: run_id.to_owned(),
            job_name: "backup".to_owned(),
            planned_at: 0,
            started_at: 0,
        }
    }

    fn job() -> JobName {
        JobName::parse("backup").unwrap()
    }

    #[test]
    fn a_run_claimed_before_a_kill_but_registered_after_it_starts_stopped() {
        let runs = Runs::default();
        let by = || StopReason::KillRequested(Some(Arc::from("alice")));
        assert_eq!(runs.stop_job(&job(), by(), 10), 0);
        let before = runs.insert(job(), summary("a"), 9);
        assert_eq!(*before.borrow(), Some(by()));
        let after = runs.insert(job(), summary("b"), 11);
        assert_eq!(*after.borrow(), None);
    }

    #[test]
    fn a_run_claimed_before_its_lock_was_taken_starts_stopped_unless_it_took_it() {
        let runs = Runs::default();
        assert_eq!(runs.stop_replaced(&job(), "new", 20), 0);
        let old = runs.insert(job(), summary("old"), 19);
        assert_eq!(*old.borrow(), Some(StopReason::Replaced));
        let new = runs.insert(job(), summary("new"), 20);
        assert_eq!(*new.borrow(), None);
    }

    #[test]
    fn a_deleted_job_forgets_its_stops() {
        let runs = Runs::default();
        runs.stop_job(&job(), StopReason::KillRequested(None), 10);
        runs.forget_job(&job());
        assert_eq!(*runs.insert(job(), summary("a"), 9).borrow(), None);
    }
}
