//! Execution records as they come back from `cron.log`, which cronfleet's workers and
//! go-crontab's share. A cronfleet record decodes as it was written; anything else is read
//! field by field with what it has: a go-crontab record carries only `jobName`, `command`,
//! `err`, `output` and the four times, so its run id is made from its `_id` and its status
//! from its `err`. A document without a job name cannot be shown and is skipped.

use chrono::{DateTime, SecondsFormat};
use cronfleet_common::{ExecutionRecord, RunStatus, Trigger};
use mongodb::bson::{self, oid::ObjectId, Bson, Document, RawBsonRef, RawDocumentBuf};
use serde::Serialize;

/// How the run id of a record without one (go-crontab's) begins; the rest is its `_id`.
const LEGACY_PREFIX: &str = "legacy-";

/// One execution record, as the API and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub record: ExecutionRecord,
    /// Written by a go-crontab worker: `runId` is `legacy-<_id>`, the status comes from
    /// `err`, and the fields go-crontab does not write are empty.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
    /// The record's times as RFC 3339, beside the Unix ms the stored fields keep.
    #[serde(flatten)]
    pub at: RunTimes,
}

/// A record's four times, RFC 3339 with milliseconds in UTC; null where the record has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTimes {
    pub planned_at: Option<String>,
    pub scheduled_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

impl RunTimes {
    fn of(record: &ExecutionRecord) -> Self {
        let time = |ms: i64| {
            (ms > 0)
                .then(|| DateTime::from_timestamp_millis(ms))
                .flatten()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        Self {
            planned_at: time(record.plan_time),
            scheduled_at: time(record.schedule_time),
            started_at: time(record.start_time),
            ended_at: time(record.end_time),
        }
    }
}

impl Run {
    fn new(record: ExecutionRecord, legacy: bool) -> Self {
        Self {
            at: RunTimes::of(&record),
            record,
            legacy,
        }
    }

    /// Reads one document, or `None` (with a warning) when it has no job name to show it under.
    pub fn decode(raw: &RawDocumentBuf) -> Option<Self> {
        if let Ok(record) = bson::from_slice::<ExecutionRecord>(raw.as_bytes()) {
            return Some(Self::new(record, false));
        }
        let read = Document::try_from(raw.as_ref())
            .ok()
            .and_then(|doc| tolerant(&doc));
        if read.is_none() {
            let id = raw.get("_id").ok().flatten().map(|id| format!("{id:?}"));
            tracing::warn!(
                id,
                "a document in the execution log has no job name or cannot be read; it is left out"
            );
        }
        read
    }
}

/// The `_id` a go-crontab record's run id stands for.
pub fn legacy_id(run_id: &str) -> Option<ObjectId> {
    ObjectId::parse_str(run_id.strip_prefix(LEGACY_PREFIX)?).ok()
}

/// A raw record's place in the log's list order, `(startTime, runId, _id)`, to merge lists
/// read apart as the server sorts them: a missing field sorts below any value.
pub fn order(raw: &RawDocumentBuf) -> (Option<i64>, Option<&str>, Option<ObjectId>) {
    #[allow(clippy::cast_possible_truncation)]
    let start = match raw.get("startTime").ok().flatten() {
        Some(RawBsonRef::Int64(n)) => Some(n),
        Some(RawBsonRef::Int32(n)) => Some(i64::from(n)),
        Some(RawBsonRef::Double(n)) if n.is_finite() => Some(n as i64),
        _ => None,
    };
    (
        start,
        raw.get_str("runId").ok(),
        raw.get_object_id("_id").ok(),
    )
}

fn tolerant(doc: &Document) -> Option<Run> {
    let job_name = doc.get_str("jobName").ok()?.to_owned();
    let text = |field: &str| doc.get_str(field).unwrap_or_default().to_owned();
    let number = |field: &str| match doc.get(field) {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        #[allow(clippy::cast_possible_truncation)]
        Some(Bson::Double(n)) if n.is_finite() => Some(*n as i64),
        Some(Bson::DateTime(t)) => Some(t.timestamp_millis()),
        _ => None,
    };
    let small = |field: &str| number(field).and_then(|n| i32::try_from(n).ok());
    let own_id = doc.get_str("runId").ok().map(str::to_owned);
    let legacy = own_id.is_none();
    let run_id = match own_id {
        Some(id) => id,
        None => format!("{LEGACY_PREFIX}{}", doc.get_object_id("_id").ok()?.to_hex()),
    };
    let err = text("err");
    let derived = from_err(&err);
    let status = doc
        .get_str("status")
        .ok()
        .and_then(|s| bson::from_bson::<RunStatus>(Bson::String(s.to_owned())).ok())
        .unwrap_or(derived.status);
    let record = ExecutionRecord {
        run_id,
        job_name,
        command: text("command"),
        output: text("output"),
        plan_time: number("planTime").unwrap_or_default(),
        schedule_time: number("scheduleTime").unwrap_or_default(),
        start_time: number("startTime").unwrap_or_default(),
        end_time: number("endTime").unwrap_or_default(),
        worker_id: text("workerId"),
        status,
        exit_code: small("exitCode").or(derived.exit_code),
        signal: small("signal").or(derived.signal),
        output_bytes: number("outputBytes")
            .unwrap_or_else(|| i64::try_from(text("output").len()).unwrap_or(i64::MAX)),
        truncated: doc.get_bool("truncated").unwrap_or_default(),
        fencing_token: number("fencingToken").unwrap_or_default(),
        job_version: number("jobVersion").unwrap_or_default(),
        trigger: doc
            .get_str("trigger")
            .ok()
            .and_then(|s| bson::from_bson::<Trigger>(Bson::String(s.to_owned())).ok())
            .unwrap_or(Trigger::Schedule),
        reason: None,
        tick_id: doc.get_str("tickId").ok().map(str::to_owned),
        attempt: small("attempt").and_then(|n| u32::try_from(n).ok()),
        source_run_id: doc.get_str("sourceRunId").ok().map(str::to_owned),
        will_retry: doc.get_bool("willRetry").ok(),
        request_id: doc.get_str("requestId").ok().map(str::to_owned),
        requested_by: doc.get_str("requestedBy").ok().map(str::to_owned),
        killed_by: doc.get_str("killedBy").ok().map(str::to_owned),
        err,
    };
    Some(Run::new(record, legacy))
}

/// What go-crontab's `err` says about how a run ended. It stores Go's `exec` error text:
/// empty on success, `exit status N`, `signal: killed` (its kill cancels the command's
/// context, which sends SIGKILL), or an `exec:` / `fork/exec` error when bash did not start.
struct Derived {
    status: RunStatus,
    exit_code: Option<i32>,
    signal: Option<i32>,
}

fn from_err(err: &str) -> Derived {
    let derived = |status, exit_code, signal| Derived {
        status,
        exit_code,
        signal,
    };
    let err = err.trim();
    if err.is_empty() {
        return derived(RunStatus::Succeeded, Some(0), None);
    }
    if let Some(code) = err
        .strip_prefix("exit status ")
        .and_then(|n| n.parse().ok())
    {
        return derived(RunStatus::Failed, Some(code), None);
    }
    if err == "signal: killed" {
        return derived(RunStatus::Killed, None, Some(9));
    }
    if err.starts_with("exec:") || err.starts_with("fork/exec") {
        return derived(RunStatus::FailedToStart, None, None);
    }
    derived(RunStatus::Failed, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn raw(doc: Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&doc).unwrap()
    }

    #[test]
    fn a_go_crontab_record_reads_with_its_status_from_err() {
        let id = ObjectId::new();
        let run = Run::decode(&raw(doc! {
            "_id": id, "jobName": "backup", "command": "exit 3", "err": "exit status 3",
            "output": "", "planTime": 1_000_i64, "scheduleTime": 1_005_i64,
            "startTime": 1_400_i64, "endTime": 1_450_i64,
        }))
        .unwrap();
        assert!(run.legacy);
        assert_eq!(run.record.run_id, format!("legacy-{}", id.to_hex()));
        assert_eq!(legacy_id(&run.record.run_id), Some(id));
        assert_eq!(run.record.status, RunStatus::Failed);
        assert_eq!(run.record.exit_code, Some(3));
        assert_eq!((run.record.plan_time, run.record.end_time), (1_000, 1_450));
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["legacy"], true);
        assert_eq!(json["jobName"], "backup");
        assert_eq!(json["startTime"], 1_400);
        assert_eq!(json["startedAt"], "1970-01-01T00:00:01.400Z");
    }

    #[test]
    fn go_crontab_errors_map_to_statuses() {
        assert_eq!(from_err("").status, RunStatus::Succeeded);
        assert_eq!(from_err("signal: killed").status, RunStatus::Killed);
        assert_eq!(
            from_err("fork/exec /bin/bash: no such file or directory").status,
            RunStatus::FailedToStart
        );
        assert_eq!(from_err("signal: terminated").status, RunStatus::Failed);
    }

    #[test]
    fn int32_times_and_missing_fields_still_read() {
        let run = Run::decode(&raw(doc! {
            "_id": ObjectId::new(), "jobName": "x", "startTime": 7_i32,
        }))
        .unwrap();
        assert_eq!(run.record.start_time, 7);
        assert_eq!(run.record.status, RunStatus::Succeeded);
        assert!(run.record.command.is_empty());
    }

    #[test]
    fn a_document_without_a_job_name_is_left_out() {
        assert!(Run::decode(&raw(doc! { "_id": ObjectId::new(), "err": "" })).is_none());
        assert!(Run::decode(&raw(doc! { "_id": ObjectId::new(), "jobName": 5 })).is_none());
    }

    #[test]
    fn a_cronfleet_record_with_a_status_from_a_newer_release_keeps_its_run_id() {
        let run = Run::decode(&raw(doc! {
            "_id": ObjectId::new(), "runId": "r-1", "jobName": "x", "status": "paused_forever",
            "err": "exit status 2", "startTime": 3_i64,
        }))
        .unwrap();
        assert!(!run.legacy);
        assert_eq!(run.record.run_id, "r-1");
        assert_eq!(run.record.status, RunStatus::Failed);
    }
}
