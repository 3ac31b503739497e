//! Runs across jobs (`/runs`): filtered by status (failures as one choice), job, worker,
//! trigger, time range and words in the output, newest first, paged by a cursor. Also the row
//! every list of runs shows.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use chrono_tz::Tz;
use cronfleet_common::MissReason;

use super::show;
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::filters::RunsQuery;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;
use crate::read::{Run, RunCursor};

/// Rows per page.
const RUNS_PAGE: usize = 50;

/// One record as a row of a list of runs.
pub(super) struct RunView {
    pub run_id: String,
    pub job: String,
    pub status: String,
    /// Why a missed tick did not start.
    pub reason: Option<&'static str>,
    pub attempt: String,
    pub planned: String,
    pub started: String,
    pub duration: String,
    pub exit: String,
    pub worker: String,
    pub started_by: String,
    pub excerpt: String,
}

impl RunView {
    /// The row of `run`, its times in `tz` (its job's zone).
    pub fn new(run: &Run, tz: Tz) -> Self {
        let r = &run.record;
        Self {
            run_id: r.run_id.clone(),
            job: r.job_name.clone(),
            status: r.status.as_str().to_owned(),
            reason: r.reason.map(MissReason::as_str),
            attempt: r.attempt.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            planned: views::at_ms(r.plan_time, tz),
            started: views::at_ms(r.start_time, tz),
            duration: views::duration_ms(r.end_time - r.start_time),
            exit: views::exit(r),
            worker: if run.legacy {
                "go-crontab worker".to_owned()
            } else {
                r.worker_id.clone()
            },
            started_by: views::started_by(r),
            excerpt: views::excerpt(&r.output),
        }
    }
}

/// The filter as the form shows it back.
#[derive(Default)]
struct FilterView {
    status: String,
    job: String,
    worker: String,
    trigger: String,
    since: String,
    until: String,
    request_id: String,
    q: String,
}

impl FilterView {
    fn new(query: &RunsQuery) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Self {
            status: text(&query.status),
            job: text(&query.job),
            worker: text(&query.worker),
            trigger: text(&query.trigger),
            since: text(&query.since),
            until: text(&query.until),
            request_id: text(&query.request_id),
            q: text(&query.q),
        }
    }

    /// The link to the page after `cursor` (the first page without one), with the same
    /// filter.
    fn link(&self, cursor: Option<&RunCursor>) -> String {
        let pairs = [
            ("status", &self.status),
            ("job", &self.job),
            ("worker", &self.worker),
            ("trigger", &self.trigger),
            ("since", &self.since),
            ("until", &self.until),
            ("requestId", &self.request_id),
            ("q", &self.q),
        ];
        let mut kept: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let cursor = cursor.map(RunCursor::to_text);
        kept.extend(cursor.as_deref().map(|c| ("cursor", c)));
        format!(
            "/runs?{}",
            serde_urlencoded::to_string(kept).unwrap_or_default()
        )
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    nav: Nav,
    filter: FilterView,
    runs: Vec<RunView>,
    error: Option<String>,
    next_page: Option<String>,
    /// On a later page, the link to the first.
    first_page: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<RunsQuery>,
) -> Result<Response, HttpError> {
    let filter_view = FilterView::new(&query);
    let checked = query
        .filter(Utc::now().timestamp_millis())
        .and_then(|filter| Ok((filter, query.cursor()?)));
    let (filter, cursor) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            return show(&RunsPage {
                nav: Nav::for_session(&session),
                filter: filter_view,
                runs: Vec::new(),
                error: Some(error.to_string()),
                next_page: None,
                first_page: None,
            })
        }
    };
    let page = state
        .reads
        .runs(&filter, cursor.as_ref(), RUNS_PAGE)
        .await?;
    let names: Vec<String> = page
        .runs
        .iter()
        .map(|r| r.record.job_name.clone())
        .collect();
    let zones = state.store.timezones(&names).await?;
    let zone = |job: &str| zones.get(job).copied().unwrap_or(Tz::UTC);
    show(&RunsPage {
        nav: Nav::for_session(&session),
        next_page: page.next.as_ref().map(|next| filter_view.link(Some(next))),
        first_page: cursor.as_ref().map(|_| filter_view.link(None)),
        filter: filter_view,
        runs: page
            .runs
            .iter()
            .map(|run| RunView::new(run, zone(&run.record.job_name)))
            .collect(),
        error: None,
    })
}
