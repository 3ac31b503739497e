//! One tick of one job: claim it, run it, release it, record it — or, when nobody started it
//! by its deadline, record it as missed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronfleet_common::values::{Chain, Request};
use cronfleet_common::{Concurrency, ExecutionRecord, JobSpec, Labels, Mode, RunStatus, Trigger};
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument as _;

use crate::claim::{Claimed, Claimer, Guard, Holder};
use crate::clock::Clock;
use crate::executor::{self, Limits, RunContext};
use crate::holds::Holds;
use crate::legacy::{self, LegacyWorkers};
use crate::metrics::Metrics;
use crate::missed;
use crate::records::{send, Base};
use crate::runs::StopReason;
use crate::runs::{RunSummary, Runs};
use crate::slot::Slot;
use crate::starts::Starts;

mod settle;

pub use settle::jitter;
use settle::{next_attempt, release, withdraw};

/// How long before its planned time a scheduled tick is claimed, so that the claim's etcd round
/// trip is not part of the start latency. The run itself starts at the planned time.
pub const CLAIM_LEAD: chrono::TimeDelta = chrono::TimeDelta::milliseconds(200);

/// What every tick task needs.
#[derive(Debug)]
pub struct Context {
    pub claimer: Claimer,
    pub clock: Clock,
    pub runs: Runs,
    pub records: mpsc::Sender<ExecutionRecord>,
    pub limits: Limits,
    pub worker_id: String,
    /// This worker's labels, which job selectors match.
    pub labels: Labels,
    pub lease: watch::Receiver<Option<i64>>,
    /// Why this worker does not claim now, if it does not.
    pub holds: Holds,
    /// Asks the session to write the registration (with a fresh heartbeat) now.
    pub reregister: Arc<Notify>,
    /// Most milliseconds this worker's clock may be from the fleet's.
    pub max_clock_skew_ms: i64,
    /// The go-crontab workers registered beside this fleet.
    pub legacy: Arc<LegacyWorkers>,
    pub metrics: Arc<Metrics>,
    /// When this worker last started a run, for work that waits for a pause in them.
    pub starts: Arc<Starts>,
}

/// What started the tick.
#[derive(Debug, Clone)]
pub enum Source {
    /// The schedule, with the guard this worker last saw.
    Schedule(Guard),
    /// A run-now request at this mod revision of `trigger/<job>`, as it reads.
    Manual(i64, Option<Arc<Request>>),
    /// A next attempt, as `retry/<job>` held it at this mod revision.
    Retry(Arc<Chain>, i64),
}

impl Source {
    /// The tick id records carry (see [`ExecutionRecord::tick_id`]), and the attempt.
    fn tick(&self, planned: DateTime<Utc>) -> (String, u32) {
        match self {
            Source::Schedule(_) => (schedule_tick_id(planned), 1),
            Source::Manual(revision, _) => (format!("manual-{revision}"), 1),
            Source::Retry(chain, _) => (chain.tick_id.clone(), chain.attempt),
        }
    }

    /// The run that chained to this tick, the run-now request that started it and who sent
    /// it, as far as each applies.
    fn requested(&self) -> (Option<String>, Option<String>, Option<String>) {
        match self {
            Source::Schedule(_) | Source::Manual(_, None) => (None, None, None),
            Source::Manual(_, Some(request)) => (
                request.source_run_id.clone(),
                Some(request.request_id.clone()),
                request.actor.clone(),
            ),
            Source::Retry(chain, _) => (
                chain.source_run_id.clone(),
                chain.request_id.clone(),
                chain.requested_by.clone(),
            ),
        }
    }

    fn trigger(&self) -> Trigger {
        match self {
            Source::Schedule(_) => Trigger::Schedule,
            Source::Manual(..) => Trigger::Manual,
            Source::Retry(chain, _) => chain.trigger,
        }
    }
}

/// The tick id of the scheduled tick `planned`.
pub fn schedule_tick_id(planned: DateTime<Utc>) -> String {
    format!("schedule-{}", planned.timestamp_millis())
}

/// Claims and, if this worker wins, runs one tick. Errors are logged, never returned: a tick
/// that fails to claim is seen as missed by the next claim.
pub async fn run(
    context: Arc<Context>,
    job: Arc<JobSpec>,
    planned: DateTime<Utc>,
    source: Source,
    slot: Slot,
) {
    let run_id = uuid::Uuid::now_v7().to_string();
    let span =
        tracing::info_span!("tick", job.name = %job.name, run.id = %run_id, planned = %planned);
    claim_and_run(&context, &job, planned, source, run_id, slot)
        .instrument(span)
        .await;
}

async fn claim_and_run(
    context: &Context,
    job: &JobSpec,
    planned: DateTime<Utc>,
    source: Source,
    run_id: String,
    slot: Slot,
) {
    // The dispatcher starts ticks only while the session holds a lease; if it was lost just
    // now, the tick waits for the next one (nothing can be claimed without it).
    let lease = match context.lease.clone().wait_for(Option::is_some).await {
        Ok(lease) => lease.unwrap_or_default(),
        Err(_) => return,
    };
    let claimed_at = context.clock.now_ms();
    let (tick_id, attempt) = source.tick(planned);
    let (source_run_id, request_id, requested_by) = source.requested();
    let holder = Holder {
        worker_id: context.worker_id.clone(),
        run_id,
        job_name: job.name.to_string(),
        planned_at: planned.timestamp_millis(),
        claimed_at,
        trigger: source.trigger(),
        job_version: i64::try_from(job.version).unwrap_or(i64::MAX),
        tick_id,
        attempt,
        source_run_id,
        request_id,
        requested_by,
    };
    let (claimed, prepared) = claim(context, job, planned, &source, lease, &holder).await;
    // Dispatched now, as go-crontab's `scheduleTime` means; a run prepared ahead is dispatched
    // at the planned time by its supervisor's own timer.
    let scheduled_at = if prepared.is_some() {
        holder.planned_at
    } else {
        context.clock.now_ms().max(holder.planned_at)
    };
    let base = Base {
        job,
        holder: &holder,
        scheduled_at,
    };
    match claimed {
        Err(e) => {
            tracing::warn!(error = %e, "claim failed; withdrawing it in case etcd applied it");
            withdraw(context, job, &holder, lease).await;
        }
        Ok(Claimed::Lost | Claimed::Locked) => {}
        Ok(Claimed::Skip {
            previous,
            holder: running,
        }) => {
            context.metrics.skipped();
            missed::record_gap(context, &base, previous, planned).await;
            let by = running.map_or_else(
                || "an earlier run, or an attempt of an earlier tick,".to_owned(),
                |h| format!("run {} on {}", h.run_id, h.worker_id),
            );
            let mut record = base.record(RunStatus::Skipped, 0);
            record.err = format!("skipped: {by} was still running (concurrency: forbid)");
            send(context, record).await;
        }
        Ok(Claimed::Start {
            revision,
            previous,
            replaced,
        }) => {
            context.metrics.started();
            missed::record_gap(context, &base, previous, planned).await;
            if let Some(replaced) = replaced {
                tracing::info!(replaced = %replaced.run_id, "took the lock from a running run (concurrency: replace)");
            }
            if job.mode == Mode::All && job.concurrency == Concurrency::Replace {
                context
                    .runs
                    .stop_job(&job.name, StopReason::Replaced, revision);
            }
            execute(context, &base, planned, (revision, lease), prepared, slot).await;
        }
    }
}

/// Claims the tick in etcd the way its source asks, and for a scheduled tick of a job run by
/// one worker, starts the run's supervisor while waiting for the planned time.
async fn claim(
    context: &Context,
    job: &JobSpec,
    planned: DateTime<Utc>,
    source: &Source,
    lease: i64,
    holder: &Holder,
) -> (
    Result<Claimed, etcd_client::Error>,
    Option<std::io::Result<executor::Prepared>>,
) {
    let mut claimer = context.claimer.clone();
    match source {
        Source::Schedule(_) if job.mode == Mode::All => {
            tokio::time::sleep(context.clock.until(planned)).await;
            let busy = job.concurrency == Concurrency::Forbid && context.runs.has_job(&job.name);
            if busy {
                let skip = Claimed::Skip {
                    previous: Guard::default(),
                    holder: None,
                };
                return (Ok(skip), None);
            }
            (claimer.claim_own(job, planned, lease, holder).await, None)
        }
        Source::Schedule(guard) => {
            let guard = *guard;
            // Claimed ahead of time, and the run's supervisor started, so that at the planned
            // time only the shell remains to start. A lock still held now may be released by
            // the planned time, so a skip is only decided then.
            let early = claimer
                .claim_tick(job, planned, guard, lease, holder, false)
                .await;
            let prepared = match &early {
                Ok(Claimed::Start { revision, .. }) => {
                    context.starts.mark();
                    let run = RunContext {
                        run_id: holder.run_id.clone(),
                        planned_at: planned,
                        fencing_token: *revision,
                    };
                    let start_in = context.clock.until(planned);
                    Some(executor::prepare(job, &run, &context.limits, start_in).await)
                }
                _ => None,
            };
            tokio::time::sleep(context.clock.until(planned)).await;
            match early {
                Ok(Claimed::Locked) => (
                    claimer
                        .claim_tick(job, planned, guard, lease, holder, true)
                        .await,
                    None,
                ),
                other => (other, prepared),
            }
        }
        Source::Manual(revision, _) => (
            claimer.claim_trigger(job, *revision, lease, holder).await,
            None,
        ),
        Source::Retry(chain, revision) => (
            claimer
                .claim_attempt(job, (chain, *revision), lease, holder)
                .await,
            None,
        ),
    }
}

async fn execute(
    context: &Context,
    base: &Base<'_>,
    planned: DateTime<Utc>,
    (revision, lease): (i64, i64),
    prepared: Option<std::io::Result<executor::Prepared>>,
    slot: Slot,
) {
    let job = base.job;
    let summary = RunSummary {
        run_id: base.holder.run_id.clone(),
        job_name: job.name.to_string(),
        planned_at: base.holder.planned_at,
        started_at: context.clock.now_ms(),
    };
    let stop = context.runs.insert(job.name.clone(), summary, revision);
    context.starts.mark();
    let prepared = match prepared {
        Some(prepared) => prepared,
        None => {
            let run = RunContext {
                run_id: base.holder.run_id.clone(),
                planned_at: planned,
                fencing_token: revision,
            };
            executor::prepare(job, &run, &context.limits, std::time::Duration::ZERO).await
        }
    };
    let mut outcome = executor::start(
        prepared,
        (job, &base.holder.run_id),
        &context.limits,
        context.clock,
        stop,
    )
    .await;
    // The lease the run was claimed under ran out meanwhile: its supervisor ended the run (or
    // the session did), before another worker could take the job.
    if *context.lease.borrow() != Some(lease) && outcome.status != RunStatus::Killed {
        outcome.status = RunStatus::Killed;
        outcome.err = "killed: the worker's etcd lease ran out during the run (the worker froze \
                       or lost etcd); its supervisor ended the run before the lease expired"
            .to_owned();
    }
    // The process is gone: its slot is free while the lock is released and the record sent.
    drop(slot);
    context.runs.remove(&base.holder.run_id);
    context.metrics.run_ended(
        (outcome.ended_at - outcome.started_at)
            .to_std()
            .unwrap_or_default(),
    );
    tracing::info!(
        fencing_token = revision,
        status = outcome.status.as_str(),
        "run ended"
    );
    let will_retry = if job.retry.is_some() || base.holder.attempt > 1 {
        next_attempt(context, job, &base.holder.run_id, outcome.status, lease).await
    } else {
        None
    };
    let mut record = base.finished(outcome, revision);
    record.will_retry = will_retry;
    let hold = (context.legacy.present() && base.holder.trigger == Trigger::Schedule)
        .then(|| legacy::lock_held_until(job, planned))
        .flatten();
    match hold {
        // A go-crontab worker may still try this tick's lock: the record goes first, the
        // lock stays until its last attempt is past.
        Some(until) => {
            send(context, record).await;
            tokio::time::sleep(context.clock.until(until)).await;
            release(context, job, &base.holder.run_id, (revision, lease)).await;
        }
        None => {
            release(context, job, &base.holder.run_id, (revision, lease)).await;
            send(context, record).await;
        }
    }
}
