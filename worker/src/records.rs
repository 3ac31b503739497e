//! The execution records a tick writes: a run's, a skip's, a miss's, and the one a survivor
//! writes for a run whose worker died.

use chrono::{DateTime, Utc};
use cronfleet_common::{ExecutionRecord, JobSpec, MissReason, RunStatus, Trigger};

use crate::claim::Holder;
use crate::executor::Outcome;
use crate::missed;
use crate::tick::{schedule_tick_id, Context};

/// Hands a record to the log pipeline.
pub(crate) async fn send(context: &Context, record: ExecutionRecord) {
    if context.records.send(record).await.is_err() {
        tracing::error!("the log pipeline is gone; an execution record was dropped");
    }
}

/// The parts of a record that do not depend on how the run ended.
pub(crate) struct Base<'a> {
    pub job: &'a JobSpec,
    pub holder: &'a Holder,
    pub scheduled_at: i64,
}

impl Base<'_> {
    pub fn record(&self, status: RunStatus, fencing_token: i64) -> ExecutionRecord {
        ExecutionRecord {
            run_id: self.holder.run_id.clone(),
            job_name: self.job.name.to_string(),
            command: self.job.command.clone(),
            err: String::new(),
            output: String::new(),
            plan_time: self.holder.planned_at,
            schedule_time: self.scheduled_at,
            start_time: self.scheduled_at,
            end_time: self.scheduled_at,
            worker_id: self.holder.worker_id.clone(),
            status,
            exit_code: None,
            signal: None,
            output_bytes: 0,
            truncated: false,
            fencing_token,
            job_version: self.holder.job_version,
            trigger: self.holder.trigger,
            reason: None,
            tick_id: Some(self.holder.tick_id.clone()),
            attempt: Some(self.holder.attempt.max(1)),
            source_run_id: self.holder.source_run_id.clone(),
            will_retry: None,
            request_id: self.holder.request_id.clone(),
            requested_by: self.holder.requested_by.clone(),
            killed_by: None,
        }
    }

    /// The `missed` record of scheduled tick `tick`.
    pub fn missed(&self, tick: DateTime<Utc>, reason: MissReason, err: String) -> ExecutionRecord {
        let mut record = self.record(RunStatus::Missed, 0);
        let ms = tick.timestamp_millis();
        record.run_id = missed::run_id(self.job, ms);
        record.plan_time = ms;
        record.trigger = Trigger::Schedule;
        record.reason = Some(reason);
        record.tick_id = Some(schedule_tick_id(tick));
        record.attempt = Some(1);
        record.err = err;
        record
    }

    pub fn finished(&self, outcome: Outcome, fencing_token: i64) -> ExecutionRecord {
        let mut record = self.record(outcome.status, fencing_token);
        record.err = outcome.err;
        record.output = outcome.output.text;
        record.output_bytes = i64::try_from(outcome.output.total_bytes).unwrap_or(i64::MAX);
        record.truncated = outcome.output.truncated;
        record.start_time = outcome.started_at.timestamp_millis();
        record.end_time = outcome.ended_at.timestamp_millis();
        record.exit_code = outcome.exit_code;
        record.signal = outcome.signal;
        record.killed_by = outcome.killed_by;
        record
    }
}

/// The record a survivor writes for a run whose worker died.
pub fn abandoned(
    holder: &Holder,
    command: &str,
    fencing_token: i64,
    now_ms: i64,
) -> ExecutionRecord {
    ExecutionRecord {
        run_id: holder.run_id.clone(),
        job_name: holder.job_name.clone(),
        command: command.to_owned(),
        err: format!(
            "abandoned: the etcd lease of worker {} expired during the run (the worker died, \
             froze or lost etcd); the run was stopped by its supervisor or with the worker",
            holder.worker_id
        ),
        output: String::new(),
        plan_time: holder.planned_at,
        schedule_time: holder.claimed_at.max(holder.planned_at),
        start_time: holder.claimed_at.max(holder.planned_at),
        end_time: now_ms,
        worker_id: holder.worker_id.clone(),
        status: RunStatus::Abandoned,
        exit_code: None,
        signal: None,
        output_bytes: 0,
        truncated: false,
        fencing_token,
        job_version: holder.job_version,
        trigger: holder.trigger,
        reason: None,
        tick_id: (!holder.tick_id.is_empty()).then(|| holder.tick_id.clone()),
        attempt: Some(holder.attempt.max(1)),
        source_run_id: holder.source_run_id.clone(),
        will_retry: None,
        request_id: holder.request_id.clone(),
        requested_by: holder.requested_by.clone(),
        killed_by: None,
    }
}
