//! What one execution record sets off, decided from the record, its job's spec and the job's
//! run of failed ticks before it. Pure.
//!
//! A record is a tick's outcome unless its worker scheduled another attempt (`willRetry`; for
//! older workers, an attempt that failed with attempts left and a status the policy retries):
//! one notification per channel and one run per chained job per tick, after its last attempt.
//! A retry that never started (`missed` at attempt 2 or later) makes the tick a failure. `killed` and `skipped` report nothing and
//! leave the run of failures as it was, and so does `missed` (only the `missed` rule hears of it).
//! A failure is reported once the run of failures has reached the rule's `afterFailures`; a
//! success right after such a run is a `recovery` (for a rule that asks for it, else a
//! `success`).

use cronfleet_common::{ChannelName, ExecutionRecord, JobName, JobSpec, NotifyOn};

/// What a record sets off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Judgement {
    /// The tick outcome it reports, `None` when it is none (an attempt retried, a kill).
    pub outcome: Option<NotifyOn>,
    /// The job's run of failed ticks after this record.
    pub failures: u32,
    /// Channels to tell, and as what.
    pub notify: Vec<(ChannelName, NotifyOn)>,
    /// Jobs to run now, once each.
    pub chain: Vec<JobName>,
}

/// Judges `record` of `spec`'s job, whose run of failures was `failures` before it.
pub fn judge(record: &ExecutionRecord, spec: &JobSpec, failures: u32) -> Judgement {
    let unchanged = Judgement {
        failures,
        ..Judgement::default()
    };
    let Some(outcome) = NotifyOn::of(record.status) else {
        return unchanged;
    };
    // The worker says whether it scheduled another attempt; for records of older workers,
    // the policy says whether one would follow.
    let retried = record.will_retry.unwrap_or_else(|| {
        spec.retry.as_ref().is_some_and(|retry| {
            record.attempt.unwrap_or(1) < retry.max_attempts && retry.retries(record.status)
        })
    });
    if retried {
        return unchanged;
    }
    // A later attempt that never started ends a tick whose attempts failed.
    let outcome = if outcome == NotifyOn::Missed && record.attempt.unwrap_or(1) > 1 {
        NotifyOn::Failure
    } else {
        outcome
    };
    match outcome {
        NotifyOn::Failure => failed(spec, failures.saturating_add(1)),
        NotifyOn::Missed => Judgement {
            outcome: Some(NotifyOn::Missed),
            failures,
            notify: spec
                .notify
                .iter()
                .filter(|rule| rule.on.contains(&NotifyOn::Missed))
                .map(|rule| (rule.channel.clone(), NotifyOn::Missed))
                .collect(),
            chain: Vec::new(),
        },
        NotifyOn::Success | NotifyOn::Recovery => succeeded(spec, failures),
    }
}

/// A tick that failed, the `failures`-th in a row: the rules whose threshold it reaches.
fn failed(spec: &JobSpec, failures: u32) -> Judgement {
    let notify = spec
        .notify
        .iter()
        .filter(|rule| rule.on.contains(&NotifyOn::Failure) && failures >= rule.after_failures)
        .map(|rule| (rule.channel.clone(), NotifyOn::Failure))
        .collect();
    Judgement {
        outcome: Some(NotifyOn::Failure),
        failures,
        notify,
        chain: spec.on_failure.clone(),
    }
}

/// A tick that succeeded after `failures` in a row: a recovery for the rules that were told
/// of them, a success for the rules that want successes.
fn succeeded(spec: &JobSpec, failures: u32) -> Judgement {
    let notify = spec
        .notify
        .iter()
        .filter_map(|rule| {
            let recovered = failures > 0 && failures >= rule.after_failures;
            if recovered && rule.on.contains(&NotifyOn::Recovery) {
                Some((rule.channel.clone(), NotifyOn::Recovery))
            } else if rule.on.contains(&NotifyOn::Success) {
                Some((rule.channel.clone(), NotifyOn::Success))
            } else {
                None
            }
        })
        .collect();
    Judgement {
        outcome: Some(if failures > 0 {
            NotifyOn::Recovery
        } else {
            NotifyOn::Success
        }),
        failures: 0,
        notify,
        chain: spec.on_success.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronfleet_common::RunStatus;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> JobSpec {
        let mut base = json!({"name": "backup", "command": "true", "cronExpr": "@every 1h"});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        JobSpec::from_user_json(base.to_string().as_bytes()).unwrap()
    }

    fn record(status: RunStatus, attempt: u32) -> ExecutionRecord {
        let mut record: ExecutionRecord = serde_json::from_value(json!({
            "runId": "r1", "jobName": "backup", "command": "true", "err": "", "output": "",
            "planTime": 0, "scheduleTime": 0, "startTime": 0, "endTime": 0, "workerId": "w",
            "status": "succeeded", "exitCode": 0, "signal": null, "outputBytes": 0,
            "truncated": false, "fencingToken": 1, "jobVersion": 1, "trigger": "schedule"
        }))
        .unwrap();
        record.status = status;
        record.attempt = Some(attempt);
        record
    }

    fn told(judgement: &Judgement) -> Vec<(&str, NotifyOn)> {
        judgement
            .notify
            .iter()
            .map(|(c, o)| (c.as_str(), *o))
            .collect()
    }

    #[test]
    fn failure_then_recovery_each_reported_once_and_success_only_when_asked() {
        let job = spec(json!({"notify": [
            {"channel": "hook", "on": ["failure", "recovery"]},
            {"channel": "all", "on": ["success"]}
        ]}));
        let first = judge(&record(RunStatus::Succeeded, 1), &job, 0);
        assert_eq!(told(&first), vec![("all", NotifyOn::Success)]);
        let failed = judge(&record(RunStatus::TimedOut, 1), &job, 0);
        assert_eq!(failed.failures, 1);
        assert_eq!(told(&failed), vec![("hook", NotifyOn::Failure)]);
        let back = judge(&record(RunStatus::Succeeded, 1), &job, failed.failures);
        assert_eq!(back.outcome, Some(NotifyOn::Recovery));
        assert_eq!(
            told(&back),
            vec![("hook", NotifyOn::Recovery), ("all", NotifyOn::Success)]
        );
        assert_eq!(back.failures, 0);
    }

    #[test]
    fn after_failures_waits_for_the_run_and_recovery_follows_only_a_reported_one() {
        let job = spec(json!({"notify": [
            {"channel": "hook", "on": ["failure", "recovery"], "afterFailures": 3}
        ]}));
        let mut failures = 0;
        let mut reported = Vec::new();
        for _ in 0..4 {
            let j = judge(&record(RunStatus::Failed, 1), &job, failures);
            failures = j.failures;
            reported.push(!j.notify.is_empty());
        }
        assert_eq!(reported, vec![false, false, true, true]);
        assert!(judge(&record(RunStatus::Succeeded, 1), &job, 2)
            .notify
            .is_empty());
        assert_eq!(
            told(&judge(&record(RunStatus::Succeeded, 1), &job, 3)),
            vec![("hook", NotifyOn::Recovery)]
        );
    }

    #[test]
    fn an_attempt_that_is_retried_reports_nothing_and_the_last_one_does() {
        let job = spec(json!({"retry": {"maxAttempts": 3},
            "notify": [{"channel": "hook", "on": ["failure"]}], "onFailure": ["cleanup"]}));
        let retried = judge(&record(RunStatus::Failed, 2), &job, 0);
        assert_eq!(retried, Judgement::default());
        let last = judge(&record(RunStatus::Failed, 3), &job, 0);
        assert_eq!(told(&last), vec![("hook", NotifyOn::Failure)]);
        assert_eq!(last.chain, vec![JobName::parse("cleanup").unwrap()]);
        // Not a status the policy retries: the tick ends at this attempt.
        let started = judge(&record(RunStatus::FailedToStart, 1), &job, 0);
        assert_eq!(started.outcome, Some(NotifyOn::Failure));
        // The worker's word wins: no attempt was scheduled (the chain was ended), so this one
        // is the outcome; and a retry that was never started reports the failure.
        let mut ended = record(RunStatus::Failed, 1);
        ended.will_retry = Some(false);
        assert_eq!(
            told(&judge(&ended, &job, 0)),
            vec![("hook", NotifyOn::Failure)]
        );
        let mut missed = record(RunStatus::Missed, 2);
        missed.will_retry = None;
        assert_eq!(judge(&missed, &job, 0).outcome, Some(NotifyOn::Failure));
    }

    #[test]
    fn kills_and_skips_report_nothing_and_chains_follow_the_outcome() {
        let job = spec(json!({"onSuccess": ["next"], "onFailure": ["cleanup"],
            "notify": [{"channel": "hook", "on": ["failure", "missed", "success"]}]}));
        assert_eq!(
            judge(&record(RunStatus::Killed, 1), &job, 2),
            Judgement {
                failures: 2,
                ..Judgement::default()
            }
        );
        assert!(judge(&record(RunStatus::Skipped, 1), &job, 0)
            .notify
            .is_empty());
        let missed = judge(&record(RunStatus::Missed, 1), &job, 1);
        assert_eq!(told(&missed), vec![("hook", NotifyOn::Missed)]);
        assert!(missed.chain.is_empty());
        assert_eq!(missed.failures, 1);
        assert_eq!(
            judge(&record(RunStatus::Succeeded, 1), &job, 0).chain,
            vec![JobName::parse("next").unwrap()]
        );
        assert_eq!(
            judge(&record(RunStatus::Abandoned, 1), &job, 0).chain,
            vec![JobName::parse("cleanup").unwrap()]
        );
    }
}
