//! The scheduler's reactions to what the watcher saw change in etcd.

use std::sync::Arc;

use cronfleet_common::values::Request;
use cronfleet_common::JobName;

use super::Scheduler;
use crate::queue::{Origin, Pending};
use crate::records;
use crate::runs::StopReason;
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
}
