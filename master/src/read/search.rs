//! Execution records across jobs: one filter (job, statuses, worker, trigger, time range, the
//! run-now request, words in the output) read newest first and paged by a [`RunCursor`].
//! Searching the output reads every record of the time range, so the range
//! of a search is bounded ([`MAX_SEARCH_WINDOW_MS`]).
//!
//! A server may read a whole index range before it applies a limit (the MongoDB-wire server
//! this project runs does: a page of the newest of 100,000 records took 4 s). So a list that
//! no selective index bounds — not one job's, not one request's — is read in [`slices`] of
//! start time going back from the newest, each eight times the last, until the page is full:
//! a page of recent runs reads only recent records. The slices start at the newest record the
//! `last_runs` table knows of (the first one stays open above it), so a log whose records are
//! all old is not read in empty slices and then all at once.
//!
//! [`slices`]: RunFilter::slices
//!
//! go-crontab's records carry neither a status nor a trigger: a status filter matches them by
//! their `err` (empty or not), a trigger filter counts them as scheduled, and the decoded
//! status is checked again after the read. A filter is read as several queries of plain fields
//! ([`RunFilter::parts`]) rather than one with `$or`: the server reads the whole collection for
//! any `$or` or `$and` (3.5 s for one page of 100,000 records, against 3 ms for the same page
//! as plain fields).

use cronfleet_common::{JobName, RunStatus, Trigger};
use mongodb::bson::{doc, Bson, Document};

use super::RunCursor;

/// The widest time range an output search reads: 7 days.
pub const MAX_SEARCH_WINDOW_MS: i64 = 7 * 24 * 3_600_000;
/// The range an output search reads when it names no start: the 24 hours before its end.
pub const DEFAULT_SEARCH_WINDOW_MS: i64 = 24 * 3_600_000;

/// The first slice of start time a list reads, and how much each next one grows.
const FIRST_SLICE_MS: i64 = 15_000;
const SLICE_GROWTH: i64 = 8;
/// Slices read before the rest is read at once: the last bounded one spans about 45 days.
const MAX_SLICES: u32 = 8;

/// A range of start times, `[from, below)`; `None` leaves a side open.
pub type Slice = (Option<i64>, Option<i64>);

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
    /// The slices of start time to read in turn, newest first, for the page after `cursor`,
    /// going back from `newest_ms` (the newest record's start time, as far as known): one
    /// open slice when a job or a request id bounds the read.
    pub fn slices(&self, cursor: Option<&RunCursor>, newest_ms: i64) -> Vec<Slice> {
        if self.job.is_some() || self.request_id.is_some() {
            return vec![(None, None)];
        }
        let anchor = cursor
            .map(|c| c.start_time + 1)
            .or(self.until_ms)
            .unwrap_or(newest_ms.saturating_add(1));
        let floor = self.since_ms.unwrap_or(i64::MIN);
        let mut slices = Vec::new();
        let (mut below, mut span) = (None, FIRST_SLICE_MS);
        for _ in 0..MAX_SLICES {
            let from = anchor.saturating_sub(span);
            if from <= floor {
                break;
            }
            slices.push((Some(from), below));
            below = Some(from);
            span = span.saturating_mul(SLICE_GROWTH);
        }
        slices.push((None, below));
        slices
    }

    /// The records after `cursor` that match and started in `slice`, as disjoint queries of
    /// plain fields (no `$or`, no `$and`: the MongoDB-wire server this project runs reads the
    /// whole collection for either, and bounds a read by an index only through a top-level
    /// field). The reader reads each in the list's order and merges them.
    pub fn parts(&self, cursor: Option<&RunCursor>, slice: Slice) -> Vec<Document> {
        let base = self.fields();
        let statuses = self.status_parts();
        let mut parts = Vec::new();
        for time in time_parts(self.range(slice), cursor) {
            for status in &statuses {
                let mut part = base.clone();
                part.extend(time.clone());
                part.extend(status.clone());
                parts.push(part);
            }
        }
        parts
    }

    /// The fields every part matches, whatever its status and time.
    fn fields(&self) -> Document {
        let mut fields = Document::new();
        if let Some(job) = &self.job {
            fields.insert("jobName", job.as_str());
        }
        if let Some(worker) = &self.worker {
            fields.insert("workerId", worker);
        }
        match self.trigger {
            Some(Trigger::Manual) => {
                fields.insert("trigger", "manual");
            }
            Some(Trigger::Schedule) => {
                fields.insert("trigger", doc! { "$ne": "manual" });
            }
            None => {}
        }
        if let Some(request_id) = &self.request_id {
            fields.insert("requestId", request_id);
        }
        if let Some(text) = &self.text {
            fields.insert("output", doc! { "$regex": escape(text), "$options": "i" });
        }
        fields
    }

    /// `[from, below)` of start time: the filter's range within the slice's.
    fn range(&self, (from, below): Slice) -> Slice {
        let until = match (self.until_ms, below) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (self.since_ms.max(from), until)
    }

    /// Whether a decoded record has one of the statuses asked for (go-crontab records are
    /// read by their `err`, which the query can only match as empty or not).
    pub fn status_matches(&self, status: RunStatus) -> bool {
        self.statuses.is_empty() || self.statuses.contains(&status)
    }

    /// One part per way a record can have a status asked for: its `status`, or (go-crontab's)
    /// an `err` empty or not. One empty part when any status will do.
    fn status_parts(&self) -> Vec<Document> {
        if self.statuses.is_empty() {
            return vec![Document::new()];
        }
        let names: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
        let mut parts = vec![doc! { "status": { "$in": names } }];
        let legacy = |err: Bson| doc! { "status": { "$exists": false }, "err": err };
        if self.statuses.contains(&RunStatus::Succeeded) {
            parts.push(legacy(Bson::String(String::new())));
        }
        if self.statuses.iter().any(|s| FAILURES.contains(s)) {
            parts.push(legacy(Bson::Document(doc! { "$ne": "" })));
        }
        parts
    }
}

/// The start-time fields of the parts for `[from, below)` after `cursor`: the records of the
/// cursor's own start time that come after it, then the older ones. None when the range is
/// empty.
fn time_parts((from, below): Slice, cursor: Option<&RunCursor>) -> Vec<Document> {
    let Some(cursor) = cursor else {
        return vec![range(from, below)];
    };
    let at = cursor.start_time;
    let mut parts = Vec::new();
    if from.is_none_or(|from| from <= at) && below.is_none_or(|below| at < below) {
        for tie in cursor.ties() {
            let mut part = doc! { "startTime": at };
            part.extend(tie);
            parts.push(part);
        }
    }
    let below = below.map_or(at, |below| below.min(at));
    if from.is_none_or(|from| from < below) {
        parts.push(range(from, Some(below)));
    }
    parts
}

/// `startTime` in `[from, below)`; no field when neither side is bounded.
fn range(from: Option<i64>, below: Option<i64>) -> Document {
    let mut range = Document::new();
    if let Some(from) = from {
        range.insert("$gte", from);
    }
    if let Some(below) = below {
        range.insert("$lt", below);
    }
    if range.is_empty() {
        range
    } else {
        doc! { "startTime": range }
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
    fn an_empty_filter_matches_everything_and_fields_stay_plain() {
        let open = (None, None);
        assert_eq!(RunFilter::default().parts(None, open), [Document::new()]);
        let filter = RunFilter {
            worker: Some("w-1".to_owned()),
            trigger: Some(Trigger::Schedule),
            ..RunFilter::default()
        };
        assert_eq!(
            filter.parts(None, open),
            [doc! { "workerId": "w-1", "trigger": { "$ne": "manual" } }]
        );
    }

    #[test]
    fn failures_match_go_crontab_records_by_a_non_empty_err_in_a_part_of_their_own() {
        let filter = RunFilter {
            statuses: vec![RunStatus::Failed],
            since_ms: Some(5),
            ..RunFilter::default()
        };
        assert_eq!(
            filter.parts(None, (None, None)),
            [
                doc! { "startTime": { "$gte": 5_i64 }, "status": { "$in": ["failed"] } },
                doc! {
                    "startTime": { "$gte": 5_i64 },
                    "status": { "$exists": false },
                    "err": { "$ne": "" },
                },
            ]
        );
        assert!(filter.status_matches(RunStatus::Failed));
        assert!(!filter.status_matches(RunStatus::Killed));
    }

    #[test]
    fn after_a_cursor_its_own_start_time_is_read_apart_from_the_older_records() {
        let cursor = RunCursor {
            start_time: 500,
            run_id: "r".to_owned(),
        };
        let any = RunFilter::default();
        assert_eq!(
            any.parts(Some(&cursor), (None, Some(900))),
            [
                doc! { "startTime": 500_i64, "runId": { "$lt": "r" } },
                doc! { "startTime": 500_i64, "runId": Bson::Null },
                doc! { "startTime": { "$lt": 500_i64 } },
            ]
        );
        assert_eq!(
            any.parts(Some(&cursor), (Some(100), Some(400))),
            [doc! { "startTime": { "$gte": 100_i64, "$lt": 400_i64 } }]
        );
        assert!(any.parts(Some(&cursor), (Some(600), None)).is_empty());
    }

    #[test]
    fn slices_go_back_from_the_newest_growing_and_stop_at_since() {
        let open = RunFilter::default().slices(None, 999_999_999);
        assert_eq!(open.len(), 9);
        assert_eq!(open[0], (Some(1_000_000_000 - 15_000), None));
        assert_eq!(
            open[1],
            (Some(1_000_000_000 - 120_000), Some(1_000_000_000 - 15_000))
        );
        assert_eq!(open[8].0, None);
        let since = RunFilter {
            since_ms: Some(1_000_000_000 - 100_000),
            ..RunFilter::default()
        };
        assert_eq!(
            since.slices(None, 999_999_999),
            [
                (Some(1_000_000_000 - 15_000), None),
                (None, Some(1_000_000_000 - 15_000))
            ]
        );
        let cursor = RunCursor {
            start_time: 500,
            run_id: "r".to_owned(),
        };
        assert_eq!(since.slices(Some(&cursor), 999_999_999), [(None, None)]);
        let job = RunFilter {
            job: Some(JobName::parse("a").unwrap()),
            ..RunFilter::default()
        };
        assert_eq!(job.slices(None, 5), [(None, None)]);
        let within = RunFilter::default().parts(None, (Some(10), Some(20)));
        assert_eq!(
            within,
            [doc! { "startTime": { "$gte": 10_i64, "$lt": 20_i64 } }]
        );
    }

    #[test]
    fn output_words_are_matched_literally() {
        assert_eq!(escape("a.b*(c)"), "a\\.b\\*\\(c\\)");
        assert_eq!(escape("disk full"), "disk full");
    }
}
