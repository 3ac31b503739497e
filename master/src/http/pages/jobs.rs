//! The dashboard (every job, filtered and paged), and the buttons of a job's page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use cronfleet_common::JobSpec;
use serde::Deserialize;

use super::show;
use super::{meta, parse_name, PAGE_SIZE};
use crate::accounts::Session;
use crate::domain::Command;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::AppState;
use crate::http::{charts, filters, views};
use crate::identity::Role;
use crate::read::stats::FleetOverview;
use crate::read::LastRun;
use crate::store::JobFilter;

struct LastRunView {
    status: String,
    when: String,
    duration: String,
}

struct JobRowView {
    name: String,
    cron_expr: String,
    schedule_words: String,
    timezone: String,
    next_run: String,
    paused: bool,
    running: usize,
    last: Option<LastRunView>,
}

impl JobRowView {
    fn new(spec: &JobSpec, running: usize, last: Option<&LastRun>, now: DateTime<Utc>) -> Self {
        Self {
            name: spec.name.to_string(),
            cron_expr: spec.cron_expr.clone(),
            schedule_words: views::schedule_words(&spec.cron_expr),
            timezone: spec.timezone.name().to_owned(),
            next_run: if spec.paused {
                "paused".to_owned()
            } else {
                spec.schedule()
                    .next_after(now)
                    .map_or_else(|| "never".to_owned(), |t| views::at(t, spec.timezone))
            },
            paused: spec.paused,
            running,
            last: last.map(|r| LastRunView {
                status: r.status.clone(),
                when: views::at_ms(r.start_time, spec.timezone),
                duration: views::duration_ms(r.end_time - r.start_time),
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Nav,
    jobs: Vec<JobRowView>,
    filter_name: String,
    filter_status: String,
    next_page: Option<String>,
    overview: OverviewView,
}

/// The fleet at a glance, above the jobs.
struct OverviewView {
    runs_last_hour: i64,
    /// Average over the last hour.
    per_minute: String,
    /// Runs per minute over the last hour, as SVG built from numbers only.
    per_minute_chart: String,
    runs_24h: i64,
    failures_24h: i64,
    missed_24h: i64,
    /// Start of the last 24 hours, for links to the runs they count.
    since_24h: String,
}

impl OverviewView {
    fn new(overview: &FleetOverview, now: DateTime<Utc>) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let per_minute = overview.runs_last_hour as f64 / 60.0;
        Self {
            runs_last_hour: overview.runs_last_hour,
            per_minute: format!("{per_minute:.1}"),
            per_minute_chart: charts::sparkline(&overview.per_minute, "runs per minute, last hour"),
            runs_24h: overview.runs_24h,
            failures_24h: overview.failures_24h,
            missed_24h: overview.missed_24h,
            since_24h: (now - chrono::Duration::hours(24))
                .format("%Y-%m-%dT%H:%M")
                .to_string(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct DashboardQuery {
    name: Option<String>,
    status: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

pub(super) async fn dashboard(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, HttpError> {
    let nav = Nav::new(&session, query.done.as_deref());
    let name = query.name.unwrap_or_default();
    let status = query.status.unwrap_or_default();
    let (paused, last_status) = filters::job_status(&status).map_err(HttpError::query)?;
    let filter = JobFilter {
        name: Some(name.clone()).filter(|n| !n.is_empty()),
        paused,
        last_status,
        after_name: query.after,
        limit: PAGE_SIZE + 1,
    };
    let mut rows = state.store.jobs(&filter).await?;
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let names: Vec<String> = rows.iter().map(|r| r.spec.name.to_string()).collect();
    let now = Utc::now();
    let (last, running, overview) = tokio::try_join!(
        state.reads.last_runs(&names),
        state.reads.running_counts(),
        state.reads.fleet_overview(now)
    )?;
    let jobs = rows
        .iter()
        .map(|row| {
            let name = row.spec.name.as_str();
            let running = running.get(name).copied().unwrap_or(0);
            JobRowView::new(&row.spec, running, last.get(name), now)
        })
        .collect();
    let next_page = more.then(|| {
        let after = names.last().cloned().unwrap_or_default();
        format!(
            "/?{}",
            serde_urlencoded::to_string([
                ("name", name.as_str()),
                ("status", status.as_str()),
                ("after", after.as_str())
            ])
            .unwrap_or_default()
        )
    });
    show(&JobsPage {
        nav,
        jobs,
        filter_name: name,
        filter_status: status,
        next_page,
        overview: OverviewView::new(&overview, now),
    })
}

#[derive(Deserialize)]
struct ConfirmForm {
    confirm: Option<String>,
}

/// The `confirm` field of a posted form.
fn confirmed(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<ConfirmForm>(body)
        .ok()
        .and_then(|f| f.confirm)
}

pub(super) async fn action(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    Path((name, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let name = parse_name(&name)?;
    let needed = if action == "delete" {
        Role::Admin
    } else {
        Role::Operator
    };
    if session.principal.role < needed {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("This needs the {needed} role."),
        ));
    }
    let request_id = uuid::Uuid::now_v7().to_string();
    let command = match action.as_str() {
        "pause" => Command::PauseJob,
        "resume" => Command::ResumeJob,
        "run" => Command::RunJobNow {
            request_id,
            source_run_id: None,
        },
        "kill" => {
            if confirmed(&body).as_deref() != Some("kill") {
                return Err(HttpError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    "confirm",
                    "Killing stops every run of the job; confirm it with the button under Kill.",
                ));
            }
            Command::KillJob { request_id }
        }
        "delete" => {
            if confirmed(&body).as_deref() != Some(name.as_str()) {
                return Err(HttpError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    "confirm",
                    "To delete the job, type its name exactly.",
                ));
            }
            Command::DeleteJob
        }
        _ => return Err(HttpError::not_found("There is no such page.")),
    };
    state
        .store
        .execute(&name, command, None, &meta(&session, &id))
        .await?;
    let to = if action == "delete" {
        "/?done=deleted".to_owned()
    } else {
        format!("/jobs/{}?done={action}", views::path_segment(name.as_str()))
    };
    Ok(Redirect::to(&to).into_response())
}
