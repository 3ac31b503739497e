//! Runs in progress across jobs, and a running run's own page until its record arrives.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use chrono_tz::Tz;

use super::show;
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;
use crate::read::Running;

/// How often a running run's page reloads itself, in seconds.
pub(super) const REFRESH_SECS: u32 = 3;

/// A run in progress, as a row or a page.
pub(super) struct RunningView {
    pub run_id: String,
    pub job: String,
    /// Empty for a go-crontab worker's run.
    pub worker: String,
    pub trigger: String,
    /// Who sent the run-now request that started it.
    pub requested_by: Option<String>,
    pub source_run_id: Option<String>,
    pub planned: String,
    pub started: String,
    pub elapsed: String,
    pub attempt: String,
}

impl RunningView {
    /// The view of `run`, its times in `tz` (its job's zone).
    pub fn new(run: &Running, now_ms: i64, tz: Tz) -> Self {
        let holder = run.holder.as_ref();
        Self {
            run_id: run.run_id.clone(),
            job: run.job.clone(),
            worker: holder.map(|h| h.worker_id.clone()).unwrap_or_default(),
            trigger: holder
                .map_or("go-crontab", |h| h.trigger.as_str())
                .to_owned(),
            requested_by: holder.and_then(|h| h.requested_by.clone()),
            source_run_id: holder.and_then(|h| h.source_run_id.clone()),
            planned: holder.map_or_else(|| "-".to_owned(), |h| views::at_ms(h.planned_at, tz)),
            started: holder.map_or_else(|| "-".to_owned(), |h| views::at_ms(h.claimed_at, tz)),
            elapsed: holder.map_or_else(
                || "-".to_owned(),
                |h| views::duration_ms(now_ms - h.claimed_at),
            ),
            attempt: holder.map_or_else(|| "-".to_owned(), |h| h.attempt.max(1).to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "running.html")]
struct RunningPage {
    nav: Nav,
    runs: Vec<RunningView>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, HttpError> {
    let now = Utc::now().timestamp_millis();
    let running = state.reads.running().await?;
    let names: Vec<String> = running.iter().map(|run| run.job.clone()).collect();
    let zones = state.store.timezones(&names).await?;
    let runs = running
        .iter()
        .map(|run| {
            let tz = zones.get(&run.job).copied().unwrap_or(Tz::UTC);
            RunningView::new(run, now, tz)
        })
        .collect();
    show(&RunningPage {
        nav: Nav::for_session(&session),
        runs,
    })
}

#[derive(Template)]
#[template(path = "execution_running.html")]
struct RunningRunPage {
    nav: Nav,
    run_id: String,
    /// `None`: the run ended, and its record is not in yet.
    run: Option<RunningView>,
    refresh_secs: u32,
    /// The end of its output so far, and when its worker sent it.
    output: Option<(String, String)>,
}

/// The page of run `run_id` while it is in progress, if it is; when a page that was
/// `following` it finds it ended and its record not in yet, a page that waits for the record.
pub(super) async fn run_page(
    state: &AppState,
    session: &Session,
    run_id: &str,
    following: bool,
) -> Result<Option<Response>, HttpError> {
    let now = Utc::now().timestamp_millis();
    let running = state.reads.running().await?;
    let run = running.iter().find(|run| run.run_id == run_id);
    if run.is_none() && !following {
        return Ok(None);
    }
    let tz = match run {
        Some(run) => {
            let zones = state
                .store
                .timezones(std::slice::from_ref(&run.job))
                .await?;
            zones.get(&run.job).copied().unwrap_or(Tz::UTC)
        }
        None => Tz::UTC,
    };
    let output = state
        .reads
        .live_output(run_id)
        .await?
        .map(|live| (live.tail, views::at_ms(live.updated_at_ms, tz)));
    show(&RunningRunPage {
        nav: Nav::for_session(session),
        run_id: run_id.to_owned(),
        run: run.map(|run| RunningView::new(run, now, tz)),
        refresh_secs: REFRESH_SECS,
        output,
    })
    .map(Some)
}
