//! What a notification says: the webhook's JSON body and the e-mail's subject and text, both
//! made from one execution record when it is judged, and stored with the delivery so that a
//! retry sends the same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use cronfleet_common::{ExecutionRecord, NotifyOn};
use serde_json::{json, Value};

/// Most bytes of the run's output a notification carries: its end, where errors are.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// The webhook body (documented in the README): `id` is the run id, the idempotency key.
pub fn body(record: &ExecutionRecord, outcome: NotifyOn, public_url: &str) -> Value {
    json!({
        "id": record.run_id,
        "outcome": outcome.as_str(),
        "job": record.job_name,
        "runId": record.run_id,
        "tickId": record.tick_id,
        "attempt": record.attempt,
        "status": record.status.as_str(),
        "exitCode": record.exit_code,
        "signal": record.signal,
        "err": record.err,
        "reason": record.reason.map(|r| r.as_str()),
        "trigger": record.trigger,
        "sourceRunId": record.source_run_id,
        "plannedAt": time(record.plan_time),
        "startedAt": time(record.start_time),
        "endedAt": time(record.end_time),
        "worker": record.worker_id,
        "outputTail": tail(&record.output),
        "url": format!(
            "{}/executions/{}",
            public_url.trim_end_matches('/'),
            crate::http::views::path_segment(&record.run_id)
        ),
    })
}

/// The e-mail subject and plain text for a body made by [`body`].
pub fn email(body: &Value) -> (String, String) {
    let text = |field: &str| match &body[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let subject = format!(
        "[cronfleet] {}: {} ({})",
        text("job"),
        text("outcome"),
        text("status")
    );
    let mut lines = vec![
        format!("Job:        {}", text("job")),
        format!("Outcome:    {}", text("outcome")),
        format!("Status:     {}", text("status")),
        format!("Exit code:  {}", text("exitCode")),
        format!("Signal:     {}", text("signal")),
        format!("Error:      {}", text("err")),
        format!("Run:        {}", text("runId")),
        format!(
            "Tick:       {} (attempt {})",
            text("tickId"),
            text("attempt")
        ),
        format!("Planned:    {}", text("plannedAt")),
        format!("Started:    {}", text("startedAt")),
        format!("Ended:      {}", text("endedAt")),
        format!("Worker:     {}", text("worker")),
        format!("Trigger:    {}", text("trigger")),
    ];
    if !body["sourceRunId"].is_null() {
        lines.push(format!("Chained by: {}", text("sourceRunId")));
    }
    lines.push(format!("Details:    {}", text("url")));
    lines.push(String::new());
    lines.push("Output (end):".to_owned());
    lines.push(text("outputTail"));
    (subject, lines.join("\n"))
}

fn time(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .filter(|_| ms > 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The last [`OUTPUT_TAIL_BYTES`] of `output`, cut at a character boundary.
fn tail(output: &str) -> &str {
    let mut start = output.len().saturating_sub(OUTPUT_TAIL_BYTES);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    &output[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronfleet_common::RunStatus;

    #[test]
    fn the_body_carries_the_facts_and_the_mail_says_them() {
        let mut record: ExecutionRecord = serde_json::from_value(json!({
            "runId": "r/1", "jobName": "backup", "command": "x", "err": "exit status 3",
            "output": format!("{}é the end", "a".repeat(OUTPUT_TAIL_BYTES)),
            "planTime": 1_800_000_000_000_i64, "scheduleTime": 0, "startTime": 1_800_000_000_100_i64,
            "endTime": 1_800_000_001_000_i64, "workerId": "w1", "status": "failed", "exitCode": 3,
            "signal": null, "outputBytes": 0, "truncated": false, "fencingToken": 1,
            "jobVersion": 1, "trigger": "schedule"
        }))
        .unwrap();
        record.status = RunStatus::Failed;
        let body = body(&record, NotifyOn::Failure, "http://m:8080/");
        assert_eq!(body["id"], "r/1");
        assert_eq!(body["url"], "http://m:8080/executions/r%2F1");
        assert_eq!(body["plannedAt"], "2027-01-15T08:00:00.000Z");
        assert!(body["outputTail"].as_str().unwrap().ends_with("é the end"));
        assert!(body["outputTail"].as_str().unwrap().len() <= OUTPUT_TAIL_BYTES);
        let (subject, text) = email(&body);
        assert_eq!(subject, "[cronfleet] backup: failure (failed)");
        assert!(text.contains("Exit code:  3"), "{text}");
        assert!(text.contains("Details:    http://m:8080/executions/r%2F1"));
    }
}
