//! Execution records across jobs: one filter (job, statuses, worker, trigger, time range, the
//! run-now request, words in the output) turned into one MongoDB query, newest first and paged
//! by a [`RunCursor`]. Searching the output reads every record of the time range, so the range
//! of a search is bounded ([`MAX_SEARCH_WINDOW_MS`]).
//!
//! go-crontab's records carry neither a status nor a trigger: a status filter matches them by
//! their `err` (empty or not), a trigger filter counts them as scheduled, and the decoded
//! status is checked again after the read.

use cronfleet_common::{JobName, RunStatus, Trigger};
use mongodb::bson::{doc, Bson, Document};

use super::RunCursor;

/// The widest time range an output search reads: 7 days.
pub const MAX_SEARCH_WINDOW_MS: i64 = 7 * 24 * 3_600_000;
/// The range an output search reads when it names no start: the 24 hours before its end.
pub const DEFAULT_SEARCH_WINDOW_MS: i64 = 24 * 3_600_000;

/// The statuses of runs that did not do what they were scheduled to do: every status but
/// `succeeded` and `skipped` (a skip is the concurrency policy working as asked).
pub const FAILURES: [RunStatus; 6] = [
    RunStatus::Failed,
    RunStatus::TimedOut,
    RunStatus::Killed,
    RunStatus::Abandoned,
    RunStatus::FailedToStart,
    RunStatus::Missed,
];

/// Which records to list; every field left empty matches every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub job: Option<JobName>,
    /// Any of these statuses; empty for any status.
    pub statuses: Vec<RunStatus>,
    pub worker: Option<String>,
    pub trigger: Option<Trigger>,
    /// Started at or after, Unix ms.
    pub since_ms: Option<i64>,
    /// Started before, Unix ms.
    pub until_ms: Option<i64>,
    /// Started by the run-now request the API answered with this id.
    pub request_id: Option<String>,
    /// Words the output contains, ignoring case (matched literally, not as a pattern).
    pub text: Option<String>,
}

impl RunFilter {
    /// The MongoDB filter for the records after `cursor` that match.
    pub fn to_document(&self, cursor: Option<&RunCursor>) -> Document {
        let mut all: Vec<Document> = Vec::new();
        if let Some(job) = &self.job {
            all.push(doc! { "jobName": job.as_str() });
        }
        if !self.statuses.is_empty() {
            all.push(doc! { "$or": self.status_clauses() });
        }
        if let Some(worker) = &self.worker {
            all.push(doc! { "workerId": worker });
        }
        match self.trigger {
            Some(Trigger::Manual) => all.push(doc! { "trigger": "manual" }),
            Some(Trigger::Schedule) => all.push(doc! { "trigger": { "$ne": "manual" } }),
            None => {}
        }
        let mut range = Document::new();
        if let Some(since) = self.since_ms {
            range.insert("$gte", since);
        }
        if let Some(until) = self.until_ms {
            range.insert("$lt", until);
        }
        if !range.is_empty() {
            all.push(doc! { "startTime": range });
        }
        if let Some(request_id) = &self.request_id {
            all.push(doc! { "requestId": request_id });
        }
        if let Some(text) = &self.text {
            all.push(doc! { "output": { "$regex": escape(text), "$options": "i" } });
        }
        if let Some(cursor) = cursor {
            all.push(doc! { "$or": cursor.filter() });
        }
        match all.len() {
            0 => Document::new(),
            1 => all.pop().unwrap_or_default(),
            _ => doc! { "$and": all },
        }
    }

    /// Whether a decoded record has one of the statuses asked for (go-crontab records are
    /// read by their `err`, which the query can only match as empty or not).
    pub fn status_matches(&self, status: RunStatus) -> bool {
        self.statuses.is_empty() || self.statuses.contains(&status)
    }

    fn status_clauses(&self) -> Vec<Document> {
        let names: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
        let mut clauses = vec![doc! { "status": { "$in": names } }];
        let legacy = |err: Bson| doc! { "status": { "$exists": false }, "err": err };
        if self.statuses.contains(&RunStatus::Succeeded) {
            clauses.push(legacy(Bson::String(String::new())));
        }
        if self.statuses.iter().any(|s| FAILURES.contains(s)) {
            clauses.push(legacy(Bson::Document(doc! { "$ne": "" })));
        }
        clauses
    }
}

/// `text` as a regular expression that matches it literally.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_matches_everything_and_one_field_stands_alone() {
        assert_eq!(RunFilter::default().to_document(None), Document::new());
        let filter = RunFilter {
            worker: Some("w-1".to_owned()),
            ..RunFilter::default()
        };
        assert_eq!(filter.to_document(None), doc! { "workerId": "w-1" });
    }

    #[test]
    fn failures_match_go_crontab_records_by_a_non_empty_err() {
        let filter = RunFilter {
            statuses: vec![RunStatus::Failed],
            since_ms: Some(5),
            ..RunFilter::default()
        };
        let document = filter.to_document(None);
        let all = document.get_array("$and").unwrap();
        let ors = all[0].as_document().unwrap().get_array("$or").unwrap();
        assert_eq!(ors.len(), 2);
        assert_eq!(
            ors[1].as_document().unwrap(),
            &doc! { "status": { "$exists": false }, "err": { "$ne": "" } }
        );
        assert_eq!(
            all[1].as_document().unwrap(),
            &doc! { "startTime": { "$gte": 5_i64 } }
        );
        assert!(filter.status_matches(RunStatus::Failed));
        assert!(!filter.status_matches(RunStatus::Killed));
    }

    #[test]
    fn output_words_are_matched_literally() {
        assert_eq!(escape("a.b*(c)"), "a\\.b\\*\\(c\\)");
        assert_eq!(escape("disk full"), "disk full");
    }
}
