//! Jobs: list, read, create, replace, delete, and the commands on one (pause, resume, run,
//! kill).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::JobSpec;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::job_view::JobView;
use super::policy::{RetentionSchema, RetrySchema, RunMode, SelectorValues};
use super::write::{expected_version, set_etag, write};
use super::{job_name, limit, page_cursor, time_param, versions};
use crate::domain::Command;
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{filters, views, ApiBody, ApiQuery, AppState, RequestContext};
use crate::store::{JobFilter, RequestMeta};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, update_job, delete_job))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(run_job))
        .routes(routes!(kill_job))
}

/// The body of a create or update: a job spec. Unknown fields are refused.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct JobInput {
    /// 1-128 characters: letters of any script, digits, spaces and punctuation; no `/`, no
    /// control or invisible formatting characters, no space at either end.
    pub name: String,
    /// Run as `<shell> -c <command>`; at most 64 KiB.
    pub command: String,
    /// 5, 6 or 7 fields, `@hourly` and friends, or `@every <duration>`.
    pub cron_expr: String,
    /// IANA time zone; default `UTC`.
    pub timezone: Option<String>,
    /// Seconds before a run is killed; none by default.
    pub timeout_secs: Option<u64>,
    /// Seconds after its planned time by which a tick must start (1-86400); by default the
    /// smaller of 60 s and the time to the next tick.
    pub starting_deadline_secs: Option<u64>,
    /// `forbid` (default), `allow` or `replace`.
    pub concurrency: Option<String>,
    /// Create the job paused.
    pub paused: Option<bool>,
    pub description: Option<String>,
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// The shell the command runs under, an absolute path; default `/bin/sh`. A worker runs
    /// only the shells it was started with (`--shell`); a run under another fails to start.
    pub shell: Option<String>,
    /// The directory the command starts in, an absolute path; default: the worker's own. A
    /// run on a worker where it does not exist fails to start (`failed_to_start`).
    pub working_dir: Option<String>,
    /// Which workers may run the job, by the labels they were started with (`--label
    /// key=value`): at most 16 label keys (1-63 of `[A-Za-z0-9._/-]`), each with the value,
    /// or the values, the worker's label must have. A worker matches when it has every key
    /// with an accepted value. Default: any worker. While no live worker matches, each tick
    /// is recorded `missed` with reason `no_matching_worker`.
    pub selector: Option<std::collections::BTreeMap<String, SelectorValues>>,
    /// `one` (default): one matching worker runs each tick; `all`: every live matching
    /// worker runs it once.
    pub mode: Option<RunMode>,
    /// Attempt a failed tick again; none by default. Refused with `mode: all`.
    pub retry: Option<RetrySchema>,
    /// Channels told of the job's tick outcomes (at most 8 rules, one per channel):
    /// `{"channel": "<name>", "on": ["failure"|"missed"|"recovery"|"success", ...],
    /// "afterFailures": n}`; `afterFailures` (1-1000, default 1) holds back failure reports
    /// until that many ticks in a row have failed. Unknown channels are refused.
    #[schema(value_type = Option<Vec<Object>>)]
    pub notify: Option<Vec<serde_json::Value>>,
    /// Jobs to run once each when a tick ends succeeded (at most 16). Each must exist, and no
    /// chain may lead back to this job.
    pub on_success: Option<Vec<String>>,
    /// Jobs to run once each when a tick ends failed (at most 16), as `onSuccess`.
    pub on_failure: Option<Vec<String>>,
    /// How long its records are kept; default: the fleet's.
    pub retention: Option<RetentionSchema>,
    /// On update: the version you last saw (or send `If-Match`).
    pub version: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only jobs whose name contains this.
    name: Option<String>,
    /// `active`, `paused`, or `failing` (its newest record is a failure: failed, timed_out,
    /// killed, abandoned, failed_to_start or missed).
    status: Option<String>,
    cursor: Option<String>,
    /// Page size, 1-500 (default 50).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", params(JobListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> Result<Json<JobPage>, HttpError> {
    let (paused, last_status) = filters::job_status(query.status.as_deref().unwrap_or_default())
        .map_err(HttpError::query)?;
    let limit = limit(query.limit)?;
    let rows = state
        .store
        .jobs(&JobFilter {
            name: query.name,
            paused,
            last_status,
            after_name: query.cursor,
            limit: limit + 1,
        })
        .await?;
    let mut items: Vec<JobView> = rows.iter().map(JobView::from_row).collect();
    let next_cursor = page_cursor(&mut items, limit, |job| job.name.clone());
    Ok(Json(JobPage { items, next_cursor }))
}

/// Keeps `limit` items; returns the cursor of the next page when there was one more.
#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = JobInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the first answer")),
    responses((status = 201, body = JobView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_job(
    State(state): State<AppState>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let mut spec = JobSpec::from_user_json(&body).map_err(HttpError::invalid)?;
    spec.version = 0;
    let name = spec.name.clone();
    let meta = context.meta(&body);
    let location = format!("/api/v1/jobs/{}", views::path_segment(name.as_str()));
    write(
        &state,
        &name,
        Command::CreateJob(spec),
        None,
        &meta,
        StatusCode::CREATED,
        Some(location),
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// The job as it was at this RFC 3339 time (its version then, `updatedAt`/`updatedBy`
    /// of the change that made it so); 404 when it did not exist then. No ETag: send the
    /// current one to update.
    #[serde(rename = "asOf")]
    #[param(rename = "asOf")]
    as_of: Option<String>,
}

#[utoipa::path(get, path = "/jobs/{name}", tag = "jobs", params(("name" = String, Path), JobQuery),
    responses((status = 200, body = JobView, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> Result<Response, HttpError> {
    let name = job_name(&name)?;
    if let Some(at) = time_param("asOf", query.as_of.as_deref())? {
        let past = state.store.job_as_of(&name, at).await?.ok_or_else(|| {
            HttpError::not_found(format!("job {name} did not exist at {}", at.to_rfc3339()))
        })?;
        return Ok(Json(versions::past_view(&past)).into_response());
    }
    let row = state
        .store
        .job(&name)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("job {name} does not exist")))?;
    let mut response = Json(JobView::from_row(&row)).into_response();
    set_etag(&mut response, row.version);
    Ok(response)
}

#[utoipa::path(put, path = "/jobs/{name}", tag = "jobs", request_body = JobInput,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag you last saw"),
           ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    context: RequestContext,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let name = job_name(&name)?;
    let spec = JobSpec::from_user_json(&body).map_err(HttpError::invalid)?;
    let expected = expected_version(&headers, spec.version)?;
    let meta = context.meta(&body);
    write(
        &state,
        &name,
        Command::UpdateJob(spec),
        expected,
        &meta,
        StatusCode::OK,
        None,
    )
    .await
}

#[utoipa::path(delete, path = "/jobs/{name}", tag = "jobs",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    context: RequestContext,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let name = job_name(&name)?;
    let expected = expected_version(&headers, 0)?;
    let meta = context.meta(b"");
    write(
        &state,
        &name,
        Command::DeleteJob,
        expected,
        &meta,
        StatusCode::NO_CONTENT,
        None,
    )
    .await
}

macro_rules! action {
    ($fn:ident, $path:literal, $status:expr, $command:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "jobs",
            params(("name" = String, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
            responses((status = 200, body = JobView), (status = 202, body = Value), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        async fn $fn(
            State(state): State<AppState>,
            Path(name): Path<String>,
            context: RequestContext,
            headers: HeaderMap,
        ) -> Result<Response, HttpError> {
            let name = job_name(&name)?;
            let expected = expected_version(&headers, 0)?;
            let meta = context.meta(b"");
            let command: fn(&RequestMeta) -> Command = $command;
            write(&state, &name, command(&meta), expected, &meta, $status, None).await
        }
    };
}

action!(
    pause_job,
    "/jobs/{name}/pause",
    StatusCode::OK,
    |_| Command::PauseJob,
    "Pause a job: no tick fires until it is resumed."
);
action!(
    resume_job,
    "/jobs/{name}/resume",
    StatusCode::OK,
    |_| Command::ResumeJob,
    "Resume a paused job."
);
action!(
    run_job,
    "/jobs/{name}/run",
    StatusCode::ACCEPTED,
    |meta| Command::RunJobNow {
        request_id: meta.request_id.clone(),
        source_run_id: None,
    },
    "Run a job now, once, on one worker."
);
action!(
    kill_job,
    "/jobs/{name}/kill",
    StatusCode::ACCEPTED,
    |meta| Command::KillJob {
        request_id: meta.request_id.clone()
    },
    "Kill every run of a job in progress."
);
