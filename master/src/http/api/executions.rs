//! Execution records, newest first, paged by a cursor: a job's, and across jobs with filters
//! (status, job, worker, trigger, time range, run-now request, words in the output); and one
//! run, ended or in progress.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::running::RunningRun;
use super::{bad_cursor, job_name, limit, PageQuery};
use crate::http::error::{ErrorBody, HttpError};
use crate::http::filters::RunsQuery;
use crate::http::{ApiQuery, AppState};
use crate::read::{Run, RunCursor};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(job_executions))
        .routes(routes!(executions))
        .routes(routes!(execution))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPage {
    #[schema(value_type = Vec<Object>)]
    /// Execution records, as stored in `cron.log`. A run of a tick carries `tickId`, shared
    /// by every attempt of the tick and, with `mode: all`, by every worker's run of it, and
    /// `attempt` (1 for the first); a `missed` record carries its `reason`. Records of
    /// go-crontab workers carry `"legacy": true`, a run id made from their `_id`, and a
    /// status derived from their `err`.
    pub items: Vec<Run>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/jobs/{name}/executions", tag = "executions", params(("name" = String, Path), PageQuery),
    responses((status = 200, body = ExecutionPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn job_executions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ExecutionPage>, HttpError> {
    let name = job_name(&name)?;
    let limit = limit(query.limit)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|text| RunCursor::parse(text).ok_or_else(bad_cursor))
        .transpose()?;
    let page = state
        .reads
        .executions(&name, cursor.as_ref(), usize::try_from(limit).unwrap_or(1))
        .await?;
    Ok(Json(ExecutionPage {
        items: page.runs,
        next_cursor: page.next.as_ref().map(RunCursor::to_text),
    }))
}

#[utoipa::path(get, path = "/executions", tag = "executions", params(RunsQuery),
    responses((status = 200, body = ExecutionPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn executions(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<ExecutionPage>, HttpError> {
    let filter = query
        .filter(Utc::now().timestamp_millis())
        .map_err(HttpError::query)?;
    let cursor = query.cursor().map_err(HttpError::query)?;
    let limit = limit(query.limit)?;
    let page = state
        .reads
        .runs(
            &filter,
            cursor.as_ref(),
            usize::try_from(limit).unwrap_or(1),
        )
        .await?;
    Ok(Json(ExecutionPage {
        items: page.runs,
        next_cursor: page.next.as_ref().map(RunCursor::to_text),
    }))
}

/// A run in progress, with the end of its output so far.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunInProgress {
    /// Always `running`.
    pub status: &'static str,
    #[serde(flatten)]
    pub run: RunningRun,
    /// The last 8 KB of its output as its worker last sent it (every 2 s at most, from 2 s
    /// into the run on); empty before that.
    pub output: String,
    /// When the worker sent `output`, RFC 3339; null before the first send.
    pub output_at: Option<String>,
}

#[utoipa::path(get, path = "/executions/{runId}", tag = "executions", params(("runId" = String, Path)),
    responses((status = 200, description = "The run's record once it ended (as in a job's executions), or the run in progress", body = RunInProgress),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn execution(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Response, HttpError> {
    if let Some(run) = state.reads.execution(&run_id).await? {
        return Ok(Json(run).into_response());
    }
    let running = state.reads.running().await?;
    let Some(run) = running.iter().find(|run| run.run_id == run_id) else {
        return Err(HttpError::not_found(format!("There is no run {run_id}.")));
    };
    let live = state.reads.live_output(&run_id).await?;
    Ok(Json(RunInProgress {
        status: "running",
        run: RunningRun::new(run, Utc::now()),
        output: live.as_ref().map(|l| l.tail.clone()).unwrap_or_default(),
        output_at: live.and_then(|l| {
            DateTime::from_timestamp_millis(l.updated_at_ms)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        }),
    })
    .into_response())
}
