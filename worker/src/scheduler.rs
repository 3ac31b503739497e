//! The plan: every known job keyed by its next fire time, in a `BTreeSet`, so the loop sleeps
//! until the earliest tick or a change and each fire costs O(log n).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronfleet_common::{JobName, JobSpec};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::claim::Guard;
use crate::runs::StopReason;
use crate::tick::{self, Context, Source, CLAIM_LEAD};
use crate::watcher::Change;

struct Entry {
    spec: Arc<JobSpec>,
    next: Option<DateTime<Utc>>,
}

/// Fires jobs on schedule and reacts to changes from the watcher.
pub struct Scheduler {
    pub context: Arc<Context>,
    pub slots: Arc<Semaphore>,
    pub tasks: TaskTracker,
    jobs: HashMap<JobName, Entry>,
    plan: BTreeSet<(DateTime<Utc>, JobName)>,
    guards: HashMap<JobName, Guard>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(context: Arc<Context>, slots: usize, tasks: TaskTracker) -> Self {
        Self {
            context,
            slots: Arc::new(Semaphore::new(slots)),
            tasks,
            jobs: HashMap::new(),
            plan: BTreeSet::new(),
            guards: HashMap::new(),
        }
    }

    /// Runs until `shutdown` or until the watcher goes away. Spawned ticks stay in `tasks`.
    pub async fn run(mut self, mut changes: mpsc::Receiver<Change>, shutdown: CancellationToken) {
        loop {
            let wake = self
                .plan
                .first()
                .map(|(at, _)| self.context.clock.until(*at - CLAIM_LEAD));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                change = changes.recv() => match change {
                    Some(change) => self.apply(change),
                    None => return,
                },
                () = tokio::time::sleep(wake.unwrap_or_default()), if wake.is_some() => self.fire_due(),
            }
        }
    }

    /// Starts every tick due within [`CLAIM_LEAD`]: each is claimed now and runs at its time.
    fn fire_due(&mut self) {
        let now = self.context.clock.now();
        while let Some((at, name)) = self.plan.first().cloned() {
            if at - CLAIM_LEAD > now {
                break;
            }
            self.plan.pop_first();
            let Some(entry) = self.jobs.get_mut(&name) else {
                continue;
            };
            let spec = Arc::clone(&entry.spec);
            // A worker that fell behind fires only the latest due tick; the ones in between are
            // recorded as missed by the claim that follows.
            let mut next = spec.schedule().next_after(at);
            if next.is_some_and(|n| n <= now) {
                next = spec.schedule().next_after(now);
            }
            entry.next = next;
            if let Some(next) = next {
                self.plan.insert((next, name.clone()));
            }
            if spec.paused {
                continue;
            }
            let guard = self.guards.get(&name).copied().unwrap_or_default();
            self.start(spec, at, Source::Schedule(guard));
        }
    }

    fn start(&self, spec: Arc<JobSpec>, planned: DateTime<Utc>, source: Source) {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(job.name = %spec.name, "every slot is busy; leaving the tick to other workers");
            return;
        };
        let context = Arc::clone(&self.context);
        self.tasks.spawn(async move {
            tick::run(context, spec, planned, source).await;
            drop(permit);
        });
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Snapshot {
                jobs,
                guards,
                triggers,
            } => {
                let mut stale: Vec<JobName> = self.jobs.keys().cloned().collect();
                stale.retain(|name| !jobs.iter().any(|spec| &spec.name == name));
                for name in stale {
                    self.remove(&name);
                }
                for spec in jobs {
                    self.put(spec);
                }
                self.guards = guards;
                for (job, revision) in triggers {
                    self.trigger(&job, revision);
                }
                tracing::info!(jobs = self.jobs.len(), "plan loaded from the snapshot");
            }
            Change::JobPut(spec) => self.put(spec),
            Change::JobDeleted(name) => {
                tracing::debug!(job.name = %name, "job removed from the plan");
                self.remove(&name);
                self.guards.remove(&name);
            }
            Change::Kill(job, revision) => {
                let stopped = self
                    .context
                    .runs
                    .stop_job(&job, StopReason::KillRequested, revision);
                if stopped > 0 {
                    tracing::info!(job.name = %job, stopped, "kill requested");
                }
            }
            Change::Trigger(job, revision) => self.trigger(&job, revision),
            Change::LockTaken {
                job,
                run_id,
                revision,
            } => {
                self.context.runs.stop_replaced(&job, &run_id, revision);
            }
            Change::Guard(job, guard) => {
                let known = self.guards.entry(job).or_default();
                if guard.mod_revision > known.mod_revision {
                    *known = guard;
                }
            }
            Change::Abandoned {
                holder,
                fencing_token,
            } => {
                let command = JobName::parse(&holder.job_name)
                    .ok()
                    .and_then(|name| self.jobs.get(&name))
                    .map(|entry| entry.spec.command.clone())
                    .unwrap_or_default();
                let record = tick::abandoned(
                    &holder,
                    &command,
                    fencing_token,
                    self.context.clock.now_ms(),
                );
                tracing::warn!(run.id = %holder.run_id, worker.id = %holder.worker_id, "run abandoned by a dead worker");
                let records = self.context.records.clone();
                self.tasks.spawn(async move {
                    let _ = records.send(record).await;
                });
            }
        }
    }

    fn trigger(&self, job: &JobName, revision: i64) {
        match self.jobs.get(job) {
            Some(entry) => {
                let planned = self.context.clock.now();
                self.start(Arc::clone(&entry.spec), planned, Source::Manual(revision));
            }
            None => tracing::warn!(job.name = %job, "run-now request for an unknown job"),
        }
    }

    fn put(&mut self, spec: JobSpec) {
        if let Some(entry) = self.jobs.get(&spec.name) {
            if *entry.spec == spec {
                return;
            }
        }
        let name = spec.name.clone();
        tracing::debug!(job.name = %name, version = spec.version, "plan updated");
        self.remove(&name);
        let next = spec.schedule().next_after(self.context.clock.now());
        if let Some(next) = next {
            self.plan.insert((next, name.clone()));
        }
        self.jobs.insert(
            name,
            Entry {
                spec: Arc::new(spec),
                next,
            },
        );
    }

    fn remove(&mut self, name: &JobName) {
        if let Some(entry) = self.jobs.remove(name) {
            if let Some(next) = entry.next {
                self.plan.remove(&(next, name.clone()));
            }
        }
    }
}
