//! The scheduler's side of retries ([`crate::chain`]): queueing pending attempts for their
//! turn, and moving on chains whose running attempt's worker died.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use cronfleet_common::job::DEFAULT_STARTING_DEADLINE;
use cronfleet_common::values::Chain;
use cronfleet_common::{JobName, JobSpec, MissReason, RunStatus};

use super::{Placement, Scheduler};
use crate::missed;
use crate::queue::{Origin, Pending};
use crate::turn::MISS_STAGGER;

impl Scheduler {
    /// Acts on `retry/<job>` as it stood at `revision`: a pending attempt is queued for its
    /// turn, from its due time, on the workers the job's selector matches now; a running one
    /// needs nothing until its run ends. A paused job's pending attempt is given up (recorded
    /// missed); a job that no longer retries, or no longer exists, has its chain ended.
    pub(super) fn chain(&mut self, job: &JobName, chain: Arc<Chain>, revision: i64) {
        self.queue.chain_moved(job, revision);
        self.queue.take_attempts(job);
        self.chains
            .insert(job.clone(), (Arc::clone(&chain), revision));
        let Some(spec) = self.jobs.get(job).map(|entry| Arc::clone(&entry.spec)) else {
            self.end_chain(job, revision);
            return;
        };
        if !chain.pending {
            return;
        }
        if spec.retry.is_none() {
            self.end_chain(job, revision);
            return;
        }
        let Some(due) = DateTime::from_timestamp_millis(chain.not_before) else {
            return;
        };
        let planned = DateTime::from_timestamp_millis(chain.planned_at).unwrap_or(due);
        let pending = |try_at, rank: i32, spec: Arc<JobSpec>| {
            let window = spec
                .starting_deadline_secs
                .and_then(|secs| i64::try_from(secs).ok())
                .map_or(DEFAULT_STARTING_DEADLINE, TimeDelta::seconds);
            let deadline = due + window;
            Pending {
                spec,
                planned,
                origin: Origin::Retry(Arc::clone(&chain), revision),
                rank: rank.unsigned_abs(),
                try_at,
                deadline: Some(deadline),
                expire_at: Some(deadline + MISS_STAGGER * rank),
                late: false,
            }
        };
        if spec.paused {
            let context = Arc::clone(&self.context);
            self.tasks.spawn(missed::miss_attempt(
                context,
                spec,
                (chain, revision),
                MissReason::Paused,
            ));
            return;
        }
        let tick = chain.planned_at.wrapping_add(i64::from(chain.attempt));
        match self.place(&spec, tick) {
            Placement::Mine(rank) => {
                let try_at = due + self.handoff() * rank;
                self.queue.push(pending(try_at, rank, spec));
            }
            Placement::Elsewhere => {}
            Placement::Watch(rank) => {
                self.queue
                    .push(pending(DateTime::<Utc>::MAX_UTC, rank, spec));
            }
        }
    }

    /// Loads the chains of a snapshot. A chain naming a running attempt that holds no key
    /// any more lost its worker while no other worker was up to see it: it moves on now.
    pub(super) fn chains_loaded(
        &mut self,
        chains: Vec<(JobName, Chain, i64)>,
        live_runs: &HashSet<String>,
    ) {
        for (job, chain, revision) in chains {
            let orphan = !chain.pending && !live_runs.contains(&chain.run_id);
            let run_id = chain.run_id.clone();
            self.chain(&job, Arc::new(chain), revision);
            let spec = self.jobs.get(&job).map(|entry| Arc::clone(&entry.spec));
            if let Some(spec) = spec.filter(|_| orphan) {
                self.attempt_abandoned(&spec, &run_id);
            }
        }
    }

    /// The run `run_id` of `spec` was abandoned: if it was the running attempt of the job's
    /// chain, the chain moves on to its next attempt (when the policy retries abandoned runs)
    /// or ends. Every surviving worker tries; the chain's mod revision lets one through.
    pub(super) fn attempt_abandoned(&self, spec: &Arc<JobSpec>, run_id: &str) {
        let running = self
            .chains
            .get(&spec.name)
            .is_some_and(|(chain, _)| !chain.pending && chain.run_id == run_id);
        if !running {
            return;
        }
        let mut claimer = self.context.claimer.clone();
        let (spec, run_id) = (Arc::clone(spec), run_id.to_owned());
        let now = self.context.clock.now_ms();
        self.tasks.spawn(async move {
            let moved = claimer
                .after_attempt(&spec, &run_id, (RunStatus::Abandoned, now, crate::tick::jitter()))
                .await;
            if let Err(e) = moved {
                tracing::warn!(job.name = %spec.name, run.id = %run_id, error = %e, "could not move on the chain of an abandoned attempt; the next snapshot does");
            }
        });
    }

    /// A kill request ends the tick being retried: its pending attempt never starts.
    pub(super) fn cancel_attempts(&mut self, job: &JobName) {
        for pending in self.queue.take_attempts(job) {
            if let Origin::Retry(chain, revision) = pending.origin {
                let context = Arc::clone(&self.context);
                self.tasks.spawn(missed::cancel_attempt(
                    context,
                    pending.spec,
                    (chain, revision),
                ));
            }
        }
    }

    /// Ends `job`'s chain if it is still at `revision`, recording nothing: the job is gone or
    /// no longer retries, so the tick's last attempt stands as its outcome.
    pub(super) fn end_chain(&self, job: &JobName, revision: i64) {
        let mut claimer = self.context.claimer.clone();
        let job = job.clone();
        self.tasks.spawn(async move {
            if let Err(e) = claimer.end_chain_at(&job, revision).await {
                tracing::warn!(job.name = %job, error = %e, "could not end the retries of a job that no longer retries them; the next snapshot does");
            }
        });
    }
}
