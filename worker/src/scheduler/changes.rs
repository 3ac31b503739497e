//! The scheduler's reactions to what the watcher saw change in etcd: jobs put into the plan
//! (and their unclaimed tick caught up) or taken out, triggers, guards and workers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronfleet_common::values::Request;
use cronfleet_common::{JobName, JobSpec, MissReason, Mode};

use super::{Entry, Scheduler};
use crate::queue::{Origin, Pending};
use crate::records;
use crate::runs::StopReason;
use crate::turn::last_tick_by;
use crate::watcher::Change;

impl Scheduler {
    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Snapshot {
                jobs,
                guards,
                triggers,
                workers,
                legacy,
                chains,
                live_runs,
            } => {
                self.chains.clear();
                self.context.legacy.reset(legacy);
                for (job, guard) in &guards {
                    self.queue.settled(job, guard.planned_ms);
                }
                self.guards = guards;
                let me = &self.context.worker_id;
                self.clock_check
                    .expect(workers.iter().filter(|(id, _)| id != me).count());
                self.peers.reset(workers);
                let mut stale: Vec<JobName> = self.jobs.keys().cloned().collect();
                stale.retain(|name| !jobs.iter().any(|spec| &spec.name == name));
                for name in stale {
                    self.remove(&name);
                    self.queue.take_job(&name);
                }
                for spec in jobs {
                    self.put(spec);
                }
                for (job, revision, source) in triggers {
                    self.trigger(&job, revision, source);
                }
                self.chains_loaded(chains, &live_runs);
                tracing::info!(
                    jobs = self.jobs.len(),
                    workers = self.peers.len(),
                    "plan loaded from the snapshot"
                );
            }
            Change::JobPut(spec) => self.put(*spec),
            Change::JobDeleted(name) => {
                tracing::debug!(job.name = %name, "job removed from the plan");
                self.remove(&name);
                self.queue.take_job(&name);
                self.guards.remove(&name);
                self.context.runs.forget_job(&name);
                if let Some((_, revision)) = self.chains.remove(&name) {
                    self.end_chain(&name, revision);
                }
            }
            Change::Kill(job, revision, actor) => {
                let stopped =
                    self.context
                        .runs
                        .stop_job(&job, StopReason::KillRequested(actor), revision);
                if stopped > 0 {
                    tracing::info!(job.name = %job, stopped, "kill requested");
                }
                self.cancel_attempts(&job);
            }
            Change::Trigger(job, revision, source) => self.trigger(&job, revision, source),
            Change::TriggerConsumed(job, revision) => self.queue.consumed(&job, revision),
            Change::LockTaken {
                job,
                run_id,
                revision,
            } => {
                self.context.runs.stop_replaced(&job, &run_id, revision);
            }
            Change::Guard(job, guard) => {
                self.queue.settled(&job, guard.planned_ms);
                let known = self.guards.entry(job).or_default();
                if guard.mod_revision > known.mod_revision {
                    *known = guard;
                }
            }
            Change::WorkerUp(id, labels) => self.peers.up(id, labels),
            Change::Chain(job, chain, revision) => self.chain(&job, Arc::new(chain), revision),
            Change::ChainEnded(job, revision) => {
                self.chains.remove(&job);
                self.queue.chain_moved(&job, revision + 1);
            }
            Change::PeerClock {
                worker,
                theirs_ms,
                mine_ms,
            } => {
                // A worker heard from for the first time hears from this one at once, so a
                // starting worker can check its clock without waiting for heartbeats.
                if worker != self.context.worker_id
                    && self.clock_check.sample(&worker, theirs_ms, mine_ms)
                {
                    self.context.reregister.notify_one();
                }
            }
            Change::WorkerDown(id) => {
                self.context.legacy.down(&id);
                self.peers.down(&id);
            }
            Change::LegacyWorkerUp(address) => self.context.legacy.up(address),
            Change::Abandoned {
                holder,
                fencing_token,
            } => {
                let spec = JobName::parse(&holder.job_name)
                    .ok()
                    .and_then(|name| self.jobs.get(&name))
                    .map(|entry| Arc::clone(&entry.spec));
                if let Some(spec) = &spec {
                    self.attempt_abandoned(spec, &holder.run_id);
                }
                let command = spec.map(|spec| spec.command.clone()).unwrap_or_default();
                let record = records::abandoned(
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

    /// Queues a run-now request: it waits for a slot as long as it takes, and whichever
    /// worker consumes `trigger/<job>` first runs it.
    fn trigger(&mut self, job: &JobName, revision: i64, request: Option<Arc<Request>>) {
        let Some(entry) = self.jobs.get(job) else {
            tracing::warn!(job.name = %job, "run-now request for an unknown job");
            return;
        };
        let spec = Arc::clone(&entry.spec);
        if !spec.selector.matches(&self.context.labels) {
            return;
        }
        let now = self.context.clock.now();
        let rank = self.rank(job, revision, &spec.selector);
        self.queue.push(Pending {
            spec,
            planned: now,
            origin: Origin::Manual(revision, request),
            rank: rank.unsigned_abs(),
            try_at: now + self.handoff() * rank,
            deadline: None,
            expire_at: None,
            late: false,
        });
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
        let now = self.context.clock.now();
        let next = spec.schedule().next_after(now);
        if let Some(next) = next {
            self.plan.insert((next, name.clone()));
        }
        let spec = Arc::new(spec);
        self.jobs.insert(
            name.clone(),
            Entry {
                spec: Arc::clone(&spec),
                next,
            },
        );
        // Ticks already waiting follow the new spec; a pause gives them up: those already due
        // are recorded as missed, ticks queued ahead of their time (the claim lead) fall in the
        // pause, when the job plans no ticks, and go unrecorded. A pending attempt is placed
        // again under the new spec (its selector may have changed).
        for mut pending in self.queue.take_job(&name) {
            match pending.origin {
                Origin::Retry(..) => {}
                Origin::Schedule if spec.paused => {
                    if pending.planned <= now {
                        self.miss(pending, MissReason::Paused);
                    }
                }
                Origin::Schedule | Origin::Manual(..) => {
                    pending.spec = Arc::clone(&spec);
                    self.queue.push(pending);
                }
            }
        }
        if let Some((chain, revision)) = self.chains.get(&name).cloned() {
            self.chain(&name, chain, revision);
        }
        if !spec.paused {
            if let Some(tick) = self.catch_up(&spec, now) {
                self.enqueue(spec, tick, now);
            }
        }
    }

    /// The latest tick of `spec` that nobody claimed (every worker was down or full) and
    /// whose starting deadline has not passed: it still runs once. Only within the job
    /// version the guard was written under; older unclaimed ticks are recorded as missed by
    /// the claim that moves the guard past them.
    fn catch_up(&self, spec: &JobSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if spec.mode == Mode::All {
            return None;
        }
        let guard = self.guards.get(&spec.name)?;
        if guard.mod_revision == 0 || guard.version != spec.version {
            return None;
        }
        let after = DateTime::from_timestamp_millis(guard.planned_ms)?;
        let latest = last_tick_by(spec, after, now);
        (latest > after)
            .then_some(latest)
            .filter(|tick| now < spec.start_deadline(*tick))
    }

    fn remove(&mut self, name: &JobName) {
        if let Some(entry) = self.jobs.remove(name) {
            if let Some(next) = entry.next {
                self.plan.remove(&(next, name.clone()));
            }
        }
    }
}
