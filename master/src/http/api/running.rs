//! Runs in progress across jobs, from the workers' keys in etcd.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiQuery, AppState};
use crate::read::Running;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_running))
}

/// A run in progress.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunningRun {
    pub run_id: String,
    pub job_name: String,
    /// The worker running it; null for a go-crontab worker's run (it says nothing more).
    pub worker_id: Option<String>,
    /// `schedule` or `manual` (a run-now, or a chain).
    pub trigger: Option<String>,
    /// The tick it runs, RFC 3339.
    pub planned_at: Option<String>,
    /// When its worker claimed it, RFC 3339: it started within moments of this.
    pub claimed_at: Option<String>,
    /// Milliseconds since it was claimed.
    pub elapsed_ms: Option<i64>,
    pub tick_id: Option<String>,
    pub attempt: Option<u32>,
    /// The run whose outcome chained to this one.
    pub source_run_id: Option<String>,
    /// The request id the API answered for the run-now that started it.
    pub request_id: Option<String>,
    /// Who sent that run-now.
    pub requested_by: Option<String>,
}

impl RunningRun {
    pub fn new(run: &Running, now: DateTime<Utc>) -> Self {
        let holder = run.holder.as_ref();
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        Self {
            run_id: run.run_id.clone(),
            job_name: run.job.clone(),
            worker_id: holder.map(|h| h.worker_id.clone()),
            trigger: holder.map(|h| h.trigger.as_str().to_owned()),
            planned_at: holder.and_then(|h| time(h.planned_at)),
            claimed_at: holder.and_then(|h| time(h.claimed_at)),
            elapsed_ms: holder.map(|h| (now.timestamp_millis() - h.claimed_at).max(0)),
            tick_id: holder.map(|h| h.tick_id.clone()).filter(|t| !t.is_empty()),
            attempt: holder.map(|h| h.attempt.max(1)),
            source_run_id: holder.and_then(|h| h.source_run_id.clone()),
            request_id: holder.and_then(|h| h.request_id.clone()),
            requested_by: holder.and_then(|h| h.requested_by.clone()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunningList {
    /// Oldest claim first; go-crontab's runs last.
    pub items: Vec<RunningRun>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunningQuery {
    /// Only this job's runs.
    job: Option<String>,
}

#[utoipa::path(get, path = "/running", tag = "executions", params(RunningQuery),
    responses((status = 200, body = RunningList), (status = 503, body = ErrorBody)))]
async fn list_running(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunningQuery>,
) -> Result<Json<RunningList>, HttpError> {
    let now = Utc::now();
    let items = state
        .reads
        .running()
        .await?
        .iter()
        .filter(|run| query.job.as_ref().is_none_or(|job| &run.job == job))
        .map(|run| RunningRun::new(run, now))
        .collect();
    Ok(Json(RunningList { items }))
}
