//! The list filters the API and the pages share, read from query parameters with errors that
//! name the parameter: the job list's status word, and the filter of runs across jobs.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use cronfleet_common::{FieldError, JobName, RunStatus, Trigger};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::read::search::{DEFAULT_SEARCH_WINDOW_MS, FAILURES, MAX_SEARCH_WINDOW_MS};
use crate::read::{RunCursor, RunFilter};

/// A parameter's value, trimmed; `None` when absent or blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The job list's `status`: `active`, `paused`, or `failing` (its newest record is one of
/// the failure statuses); empty for any. Gives the `paused` flag and the newest-record
/// statuses to filter on.
pub fn job_status(word: &str) -> Result<(Option<bool>, Option<Vec<String>>), FieldError> {
    match word {
        "" => Ok((None, None)),
        "active" => Ok((Some(false), None)),
        "paused" => Ok((Some(true), None)),
        "failing" => Ok((
            None,
            Some(FAILURES.iter().map(|s| s.as_str().to_owned()).collect()),
        )),
        other => Err(FieldError::new(
            "status",
            format!("{other:?} is not one of active, paused, failing"),
        )),
    }
}

/// The parameters of a list of runs across jobs (`GET /api/v1/executions`, `/runs`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Comma-separated statuses (`succeeded`, `failed`, `timed_out`, `killed`, `abandoned`,
    /// `failed_to_start`, `skipped`, `missed`), or `failures` for every one but `succeeded`
    /// and `skipped`.
    pub status: Option<String>,
    /// The job's exact name.
    pub job: Option<String>,
    /// The worker id.
    pub worker: Option<String>,
    /// `schedule` or `manual`.
    pub trigger: Option<String>,
    /// Started at or after: RFC 3339, or `YYYY-MM-DD[THH:MM[:SS]]` in UTC.
    pub since: Option<String>,
    /// Started before, as `since`.
    pub until: Option<String>,
    /// The request id a run-now answered: the runs it started (every attempt).
    pub request_id: Option<String>,
    /// Words the output contains, ignoring case. Reads every record of its range, so the
    /// range is at most 7 days (default: the 24 hours before `until` or now).
    pub q: Option<String>,
    pub cursor: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<i64>,
}

impl RunsQuery {
    /// The filter these parameters ask for, checked; `now_ms` ends a search's default range.
    pub fn filter(&self, now_ms: i64) -> Result<RunFilter, FieldError> {
        let job = given(&self.job)
            .map(|name| JobName::parse(name).map_err(|e| FieldError::new("job", e.reason)))
            .transpose()?;
        let statuses = given(&self.status).map_or(Ok(Vec::new()), statuses)?;
        let trigger = given(&self.trigger).map(trigger).transpose()?;
        let since_ms = given(&self.since).map(|t| time("since", t)).transpose()?;
        let until_ms = given(&self.until).map(|t| time("until", t)).transpose()?;
        if let (Some(since), Some(until)) = (since_ms, until_ms) {
            if since >= until {
                return Err(FieldError::new("until", "must be after since"));
            }
        }
        let text = given(&self.q).map(str::to_owned);
        let since_ms = match (&text, since_ms) {
            (Some(_), None) => Some(until_ms.unwrap_or(now_ms) - DEFAULT_SEARCH_WINDOW_MS),
            (_, since) => since,
        };
        if let (Some(_), Some(since)) = (&text, since_ms) {
            if until_ms.unwrap_or(now_ms) - since > MAX_SEARCH_WINDOW_MS {
                return Err(FieldError::new(
                    "q",
                    "an output search covers at most 7 days: set since and until closer",
                ));
            }
        }
        Ok(RunFilter {
            job,
            statuses,
            worker: given(&self.worker).map(str::to_owned),
            trigger,
            since_ms,
            until_ms,
            request_id: given(&self.request_id).map(str::to_owned),
            text,
        })
    }

    /// The cursor to start after, checked.
    pub fn cursor(&self) -> Result<Option<RunCursor>, FieldError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|text| {
                RunCursor::parse(text)
                    .ok_or_else(|| FieldError::new("cursor", "not a cursor this server returned"))
            })
            .transpose()
    }
}

fn statuses(list: &str) -> Result<Vec<RunStatus>, FieldError> {
    let mut out = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word == "failures" {
            out.extend(FAILURES);
            continue;
        }
        let status =
            serde_json::from_value::<RunStatus>(serde_json::Value::from(word)).map_err(|_| {
                FieldError::new(
                    "status",
                    format!(
                        "{word:?} is not failures or one of succeeded, failed, timed_out, \
                         killed, abandoned, failed_to_start, skipped, missed"
                    ),
                )
            })?;
        out.push(status);
    }
    out.sort_by_key(|s| s.as_str());
    out.dedup();
    Ok(out)
}

fn trigger(word: &str) -> Result<Trigger, FieldError> {
    match word {
        "schedule" => Ok(Trigger::Schedule),
        "manual" => Ok(Trigger::Manual),
        other => Err(FieldError::new(
            "trigger",
            format!("{other:?} is not one of schedule, manual"),
        )),
    }
}

/// A time as RFC 3339, or a date with an optional time of day in UTC (what a browser's
/// date and time inputs send), as Unix ms.
fn time(field: &str, text: &str) -> Result<i64, FieldError> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|t| t.and_utc())
        });
    parsed.map(|t| t.timestamp_millis()).ok_or_else(|| {
        FieldError::new(
            field,
            format!("{text:?} is not a time: use RFC 3339 or YYYY-MM-DD[THH:MM] (UTC)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> RunsQuery {
        serde_urlencoded::from_str(&serde_urlencoded::to_string(pairs).unwrap()).unwrap()
    }

    #[test]
    fn failures_expand_and_statuses_are_checked_by_name() {
        let filter = query(&[("status", "failures,succeeded")])
            .filter(0)
            .unwrap();
        assert_eq!(filter.statuses.len(), FAILURES.len() + 1);
        let error = query(&[("status", "broken")]).filter(0).unwrap_err();
        assert_eq!(error.field, "status");
    }

    #[test]
    fn times_read_as_rfc3339_or_a_utc_date_and_must_be_in_order() {
        let filter = query(&[("since", "2026-11-27"), ("until", "2026-11-27T10:30")])
            .filter(0)
            .unwrap();
        assert_eq!(filter.since_ms, Some(1_795_737_600_000));
        assert_eq!(filter.until_ms, Some(1_795_775_400_000));
        let error = query(&[("since", "2026-11-28"), ("until", "2026-11-27")])
            .filter(0)
            .unwrap_err();
        assert_eq!(error.field, "until");
        assert_eq!(
            query(&[("since", "yesterday")])
                .filter(0)
                .unwrap_err()
                .field,
            "since"
        );
    }

    #[test]
    fn a_search_reads_a_bounded_range() {
        let now = 100 * 24 * 3_600_000;
        let filter = query(&[("q", "disk full")]).filter(now).unwrap();
        assert_eq!(filter.since_ms, Some(now - DEFAULT_SEARCH_WINDOW_MS));
        let wide = query(&[("q", "x"), ("since", "1970-01-02")]).filter(now);
        assert_eq!(wide.unwrap_err().field, "q");
    }

    #[test]
    fn the_job_status_word_is_checked() {
        assert_eq!(job_status("paused").unwrap(), (Some(true), None));
        assert!(job_status("failing")
            .unwrap()
            .1
            .unwrap()
            .contains(&"failed".to_owned()));
        assert_eq!(job_status("failed").unwrap_err().field, "status");
    }
}
