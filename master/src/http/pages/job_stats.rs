//! A job's statistics page: runs by status, success rate and duration percentiles over 24
//! hours and 7 days, runs per day as bars and recent durations as a line, drawn as SVG.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;

use super::{no_such_job, parse_name, show};
use crate::accounts::Session;
use crate::http::api::stats::RECENT_DURATIONS;
use crate::http::charts;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;
use crate::read::stats::Window;

/// A window as a row of the table.
struct WindowView {
    label: &'static str,
    runs: i64,
    by_status: Vec<(String, i64)>,
    success_rate: String,
    p50: String,
    p95: String,
}

impl WindowView {
    fn new(label: &'static str, w: Window) -> Self {
        let ms = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), views::duration_ms);
        Self {
            label,
            runs: w.runs,
            success_rate: w
                .success_rate
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0)),
            p50: ms(w.p50_ms),
            p95: ms(w.p95_ms),
            by_status: w.by_status.into_iter().collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "job_stats.html")]
struct JobStatsPage {
    nav: Nav,
    job: String,
    timezone: String,
    windows: Vec<WindowView>,
    /// Inline SVG built from numbers only (see [`charts`]).
    daily_chart: String,
    durations_chart: String,
    recent_runs: usize,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let name = parse_name(&name)?;
    let row = state.store.job(&name).await?.ok_or_else(no_such_job)?;
    let tz = row.spec.timezone;
    let (stats, recent) = tokio::try_join!(
        state.reads.job_stats(&name, Utc::now(), tz),
        state.reads.recent_durations(&name, RECENT_DURATIONS)
    )?;
    show(&JobStatsPage {
        nav: Nav::for_session(&session),
        job: name.to_string(),
        timezone: tz.name().to_owned(),
        daily_chart: charts::daily_bars(&stats.daily),
        durations_chart: charts::sparkline(&recent, "durations of the recent runs, ms"),
        recent_runs: recent.len(),
        windows: vec![
            WindowView::new("Last 24 hours", stats.last_24h),
            WindowView::new("Last 7 days", stats.last_7d),
        ],
    })
}
