//! Ticks that did not start: the `missed` records, each written once.
//!
//! * A scheduled tick still waiting at its deadline is given up by the worker whose txn moves
//!   the job's guard to it ([`miss`]); that worker also records the unclaimed ticks before it.
//! * A worker's own run of a tick of a job run on every worker is its alone to give up
//!   ([`miss_own`]); its record's run id is derived from the tick and the worker, so it is
//!   stored once however often it is sent.
//! * A pending attempt is given up by the worker whose txn deletes the chain ([`miss_attempt`],
//!   or [`cancel_attempt`] when a kill request came first).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronfleet_common::values::Chain;
use cronfleet_common::{JobSpec, MissReason, Mode, RunStatus, Trigger};

use tokio_util::task::TaskTracker;

use crate::claim::{Guard, Holder};
use crate::queue::{Origin, Pending};
use crate::records::{send, Base};
use crate::tick::{schedule_tick_id, Context};

/// Most `missed` records written for one gap; a longer gap gets one more record that says how
/// many ticks it covered.
const MAX_MISSED_RECORDS: usize = 100;

/// Records `pending` as missed for `reason` in a task of `tasks`, the way its origin is given
/// up; `guard` is its job's tick guard as this worker last saw it.
pub fn spawn(
    tasks: &TaskTracker,
    context: Arc<Context>,
    pending: Pending,
    guard: Guard,
    reason: MissReason,
) {
    let (spec, planned) = (pending.spec, pending.planned);
    match pending.origin {
        Origin::Retry(chain, revision) => {
            tasks.spawn(miss_attempt(context, spec, (chain, revision), reason));
        }
        Origin::Schedule if spec.mode == Mode::All && spec.selector.matches(&context.labels) => {
            tasks.spawn(miss_own(context, spec, planned, reason));
        }
        Origin::Schedule | Origin::Manual(..) => {
            tasks.spawn(miss(context, spec, planned, guard, reason));
        }
    }
}

/// Gives up a tick that was still waiting on this worker at its deadline: if this worker is
/// the one that moves the guard to it, it records it (and any unclaimed ticks before it) as
/// missed.
pub async fn miss(
    context: Arc<Context>,
    job: Arc<JobSpec>,
    planned: DateTime<Utc>,
    guard: Guard,
    reason: MissReason,
) {
    let mut claimer = context.claimer.clone();
    let previous = match claimer.miss_tick(&job, planned, guard).await {
        Ok(Some(previous)) => previous,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job.name = %job.name, planned = %planned, error = %e, "could not record a missed tick; the next claim records it");
            return;
        }
    };
    if context.legacy.present() {
        unrecorded(&context, &job, 1);
        return;
    }
    let holder = holder(
        &context,
        &job,
        planned,
        run_id(&job, planned.timestamp_millis()),
    );
    let base = Base {
        job: &job,
        holder: &holder,
        scheduled_at: context.clock.now_ms(),
    };
    // The ticks between of a job run on every worker were each worker's own, not the guard's.
    if job.mode == Mode::One {
        record_gap(&context, &base, previous, planned).await;
    }
    tracing::warn!(job.name = %job.name, planned = %planned, reason = reason.as_str(), "tick missed its starting deadline");
    send(&context, base.missed(planned, reason, describe(reason))).await;
    context.metrics.missed(reason);
}

/// Gives up this worker's run of tick `planned` of a job run on every worker.
pub async fn miss_own(
    context: Arc<Context>,
    job: Arc<JobSpec>,
    planned: DateTime<Utc>,
    reason: MissReason,
) {
    let id = format!(
        "{}-{}",
        run_id(&job, planned.timestamp_millis()),
        context.worker_id
    );
    let holder = holder(&context, &job, planned, id.clone());
    let base = Base {
        job: &job,
        holder: &holder,
        scheduled_at: context.clock.now_ms(),
    };
    let mut record = base.missed(planned, reason, describe(reason));
    record.run_id = id;
    tracing::warn!(job.name = %job.name, planned = %planned, reason = reason.as_str(), "this worker's run of the tick missed its starting deadline");
    send(&context, record).await;
    context.metrics.missed(reason);
}

/// Gives up the pending attempt `chain` (at mod revision `revision`): if this worker is the
/// one that ends the chain, it records the attempt as missed.
pub async fn miss_attempt(
    context: Arc<Context>,
    job: Arc<JobSpec>,
    (chain, revision): (Arc<Chain>, i64),
    reason: MissReason,
) {
    let err = format!(
        "attempt {} {}",
        chain.attempt,
        describe(reason).trim_start_matches("missed: ")
    );
    if end_attempt(
        &context,
        &job,
        (&chain, revision),
        RunStatus::Missed,
        err,
        Some(reason),
    )
    .await
    {
        tracing::warn!(job.name = %job.name, attempt = chain.attempt, reason = reason.as_str(), "attempt missed its starting deadline");
        context.metrics.missed(reason);
    }
}

/// Ends the chain whose pending attempt a kill request caught before it started, recording
/// the attempt as killed — once, by the worker whose txn ends the chain.
pub async fn cancel_attempt(
    context: Arc<Context>,
    job: Arc<JobSpec>,
    (chain, revision): (Arc<Chain>, i64),
) {
    let err = format!(
        "killed on request before attempt {} started; the tick gets no further attempt",
        chain.attempt
    );
    if end_attempt(
        &context,
        &job,
        (&chain, revision),
        RunStatus::Killed,
        err,
        None,
    )
    .await
    {
        tracing::info!(job.name = %job.name, attempt = chain.attempt, "pending attempt cancelled by a kill request");
    }
}

/// Deletes the chain at `revision` and, if this call did, records its pending attempt with
/// `status`. Whether it did.
async fn end_attempt(
    context: &Context,
    job: &JobSpec,
    (chain, revision): (&Chain, i64),
    status: RunStatus,
    err: String,
    reason: Option<MissReason>,
) -> bool {
    let mut claimer = context.claimer.clone();
    match claimer.end_chain_at(&job.name, revision).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(job.name = %job.name, error = %e, "could not end a pending attempt; another worker or a later try will");
            return false;
        }
    }
    let Some(planned) = DateTime::from_timestamp_millis(chain.planned_at) else {
        return false;
    };
    let id = format!(
        "{}-{}-{}-{}",
        status.as_str(),
        job.name,
        chain.tick_id,
        chain.attempt
    );
    let mut holder = holder(context, job, planned, id);
    holder.trigger = chain.trigger;
    holder.tick_id = chain.tick_id.clone();
    holder.attempt = chain.attempt;
    let base = Base {
        job,
        holder: &holder,
        scheduled_at: context.clock.now_ms(),
    };
    let mut record = base.record(status, 0);
    record.reason = reason;
    record.err = err;
    send(context, record).await;
    true
}

fn holder(context: &Context, job: &JobSpec, planned: DateTime<Utc>, run_id: String) -> Holder {
    Holder {
        worker_id: context.worker_id.clone(),
        run_id,
        job_name: job.name.to_string(),
        planned_at: planned.timestamp_millis(),
        claimed_at: context.clock.now_ms(),
        trigger: Trigger::Schedule,
        job_version: i64::try_from(job.version).unwrap_or(i64::MAX),
        tick_id: schedule_tick_id(planned),
        attempt: 1,
        source_run_id: None,
        request_id: None,
        requested_by: None,
    }
}

pub fn describe(reason: MissReason) -> String {
    match reason {
        MissReason::NoFreeSlot => {
            "missed: every worker that could take it had all its slots busy until its deadline"
        }
        MissReason::NoWorker => "missed: no worker claimed this tick before its deadline",
        MissReason::DeadlinePassed => {
            "missed: the worker holding it saw it only after its deadline (stalled or paused)"
        }
        MissReason::Paused => "missed: the job was paused while the tick waited for a slot",
        MissReason::NoMatchingWorker => {
            "missed: no live worker's labels matched the job's selector before its deadline"
        }
    }
    .to_owned()
}

/// The run id of the `missed` record of tick `planned_ms` of `job`.
pub fn run_id(job: &JobSpec, planned_ms: i64) -> String {
    format!("missed-{}-{planned_ms}", job.name)
}

/// Records every tick between the previous guard and `planned` that nobody claimed.
pub(crate) async fn record_gap(
    context: &Context,
    base: &Base<'_>,
    previous: Guard,
    planned: DateTime<Utc>,
) {
    if previous.mod_revision == 0 || previous.version != base.job.version {
        return;
    }
    let Some(mut cursor) = DateTime::from_timestamp_millis(previous.planned_ms) else {
        return;
    };
    let schedule = base.job.schedule();
    let mut gap = Vec::new();
    let mut extra = 0usize;
    while let Some(next) = schedule.next_after(cursor).filter(|next| *next < planned) {
        if gap.len() < MAX_MISSED_RECORDS {
            gap.push(next);
        } else {
            extra += 1;
        }
        cursor = next;
    }
    if gap.is_empty() {
        return;
    }
    if context.legacy.present() {
        unrecorded(context, base.job, gap.len() + extra);
        return;
    }
    let last = gap.len().saturating_sub(1);
    for (index, tick) in gap.into_iter().enumerate() {
        let err = if index == last && extra > 0 {
            format!(
                "{}, nor the {extra} after it",
                describe(MissReason::NoWorker)
            )
        } else {
            describe(MissReason::NoWorker)
        };
        send(context, base.missed(tick, MissReason::NoWorker, err)).await;
        context.metrics.missed(MissReason::NoWorker);
    }
}

/// Counts ticks nobody in this fleet started while go-crontab workers are registered: one of
/// them may have run each, and wrote its own record if it did.
fn unrecorded(context: &Context, job: &JobSpec, ticks: usize) {
    tracing::info!(job.name = %job.name, ticks, "ticks not started here are left unrecorded: go-crontab workers are registered and may have run them");
    context.metrics.unrecorded(ticks);
}
