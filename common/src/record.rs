//! The execution record: one document per run in MongoDB `cron.log`.

use serde::{Deserialize, Serialize};

/// Mongo database and collection names used by default (go-crontab's).
pub const DEFAULT_MONGO_DB: &str = "cron";
/// The collection execution records go to.
pub const LOG_COLLECTION: &str = "log";

/// How a run ended, or why a planned tick did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Exited with code 0.
    Succeeded,
    /// Exited with a non-zero code, or died of a signal nobody sent.
    Failed,
    /// Killed because it ran past the job's timeout.
    TimedOut,
    /// Killed on request (a kill command, or `replace` concurrency).
    Killed,
    /// Its worker died mid-run; written by a surviving worker.
    Abandoned,
    /// The shell could not be started.
    FailedToStart,
    /// Not started because an earlier run still held the lock (`forbid` concurrency).
    Skipped,
    /// Not started because no worker was able to claim the tick in time.
    Missed,
}

impl RunStatus {
    /// The snake_case name used in JSON and BSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Killed => "killed",
            RunStatus::Abandoned => "abandoned",
            RunStatus::FailedToStart => "failed_to_start",
            RunStatus::Skipped => "skipped",
            RunStatus::Missed => "missed",
        }
    }
}

/// Why a planned tick did not start (the `reason` of a `missed` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// Every worker that could take the tick had all its slots busy until the deadline.
    NoFreeSlot,
    /// No worker claimed the tick before its deadline: every worker was down or cut off
    /// from etcd.
    NoWorker,
    /// The worker that held the tick saw it only after its deadline (it was stalled or
    /// paused).
    DeadlinePassed,
    /// The job was paused while the tick waited for a slot.
    Paused,
    /// No live worker's labels matched the job's selector.
    NoMatchingWorker,
}

impl MissReason {
    /// The snake_case name used in JSON, BSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::NoFreeSlot => "no_free_slot",
            MissReason::NoWorker => "no_worker",
            MissReason::DeadlinePassed => "deadline_passed",
            MissReason::Paused => "paused",
            MissReason::NoMatchingWorker => "no_matching_worker",
        }
    }

    /// Every reason, for metrics that list each one.
    pub const ALL: [MissReason; 5] = [
        MissReason::NoFreeSlot,
        MissReason::NoWorker,
        MissReason::DeadlinePassed,
        MissReason::Paused,
        MissReason::NoMatchingWorker,
    ];
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The job's cron schedule.
    Schedule,
    /// A run-now command.
    Manual,
}

impl Trigger {
    /// The snake_case name used in JSON and BSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
        }
    }
}

/// One execution, as stored in Mongo. Times are Unix milliseconds, as in go-crontab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    /// Unique per run; the unique index that makes retried inserts idempotent.
    pub run_id: String,
    pub job_name: String,
    pub command: String,
    /// Why the run did not succeed, in words; empty when it did.
    pub err: String,
    /// Captured stdout and stderr (head and tail when truncated).
    pub output: String,
    /// The tick the run was planned for.
    pub plan_time: i64,
    /// When the worker picked the tick up.
    pub schedule_time: i64,
    /// When the child process started (or the tick was given up, for skipped and missed).
    pub start_time: i64,
    /// When the child process ended.
    pub end_time: i64,
    pub worker_id: String,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Total bytes the run wrote, including any that were cut from `output`.
    pub output_bytes: i64,
    /// Whether `output` lost bytes from its middle to the output cap.
    pub truncated: bool,
    /// The etcd revision of the claim that started the run; 0 when nothing was claimed.
    pub fencing_token: i64,
    pub job_version: i64,
    pub trigger: Trigger,
    /// Why the tick did not start; only on `missed` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<MissReason>,
    /// The tick this run belongs to, shared by its retry attempts and, for a job run on
    /// every worker, by every worker's run: `schedule-<planned ms>` or `manual-<request
    /// revision>`. Absent on records of older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_id: Option<String>,
    /// Which attempt of its tick this run was (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The run whose outcome started this one through a chain (`onSuccess`/`onFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    /// Whether another attempt of the tick was scheduled when this one ended (jobs with a
    /// retry policy): `false` makes this record the tick's outcome. Absent from older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will_retry: Option<bool>,
    /// The request id the API answered for the run-now that started this run (and its
    /// attempts), so a script can find the run it asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who sent that run-now request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Who sent the kill request that stopped this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ExecutionRecord {
        ExecutionRecord {
            run_id: "0193a7c1-run".to_owned(),
            job_name: "backup".to_owned(),
            command: "echo 'hi' && exit 3".to_owned(),
            err: "exit code 3".to_owned(),
            output: "hi\n".to_owned(),
            plan_time: 1_764_072_000_000,
            schedule_time: 1_764_072_000_001,
            start_time: 1_764_072_000_004,
            end_time: 1_764_072_001_250,
            worker_id: "host-a-4242".to_owned(),
            status: RunStatus::Failed,
            exit_code: Some(3),
            signal: None,
            output_bytes: 3,
            truncated: false,
            fencing_token: 812,
            job_version: 4,
            trigger: Trigger::Schedule,
            reason: None,
            tick_id: Some("schedule-1764072000000".to_owned()),
            attempt: Some(2),
            source_run_id: None,
            will_retry: None,
            request_id: Some("req-1".to_owned()),
            requested_by: Some("alice".to_owned()),
            killed_by: None,
        }
    }

    #[test]
    fn bson_round_trip_keeps_every_field() {
        let original = record();
        let document = bson::to_document(&original).unwrap();
        assert_eq!(
            bson::from_document::<ExecutionRecord>(document).unwrap(),
            original
        );
    }

    #[test]
    fn bson_uses_go_crontab_names_and_millisecond_integers() {
        let document = bson::to_document(&record()).unwrap();
        for field in [
            "jobName",
            "command",
            "err",
            "output",
            "runId",
            "workerId",
            "fencingToken",
        ] {
            assert!(document.contains_key(field), "missing {field}");
        }
        for field in ["planTime", "scheduleTime", "startTime", "endTime"] {
            assert!(
                matches!(document.get(field), Some(bson::Bson::Int64(_))),
                "{field}"
            );
        }
        assert_eq!(document.get_str("status").unwrap(), "failed");
        assert_eq!(document.get_str("trigger").unwrap(), "schedule");
        assert!(matches!(document.get("signal"), Some(bson::Bson::Null)));
    }

    #[test]
    fn a_missed_record_carries_its_reason_and_others_carry_none() {
        assert!(!bson::to_document(&record()).unwrap().contains_key("reason"));
        for reason in MissReason::ALL {
            let mut missed = record();
            missed.status = RunStatus::Missed;
            missed.reason = Some(reason);
            let document = bson::to_document(&missed).unwrap();
            assert_eq!(document.get_str("reason").unwrap(), reason.as_str());
            assert_eq!(
                bson::from_document::<ExecutionRecord>(document)
                    .unwrap()
                    .reason,
                Some(reason)
            );
        }
    }

    #[test]
    fn every_status_round_trips_under_its_name() {
        for status in [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::TimedOut,
            RunStatus::Killed,
            RunStatus::Abandoned,
            RunStatus::FailedToStart,
            RunStatus::Skipped,
            RunStatus::Missed,
        ] {
            let mut r = record();
            r.status = status;
            let document = bson::to_document(&r).unwrap();
            assert_eq!(document.get_str("status").unwrap(), status.as_str());
            assert_eq!(
                bson::from_document::<ExecutionRecord>(document)
                    .unwrap()
                    .status,
                status
            );
        }
    }
}
