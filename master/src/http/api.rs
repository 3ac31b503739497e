//! The REST API under `/api/v1`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use cronfleet_common::{ExecutionRecord, JobName, JobSpec};
use etcd_client::GetOptions;
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::{ApiBody, ApiQuery, AppState, RequestContext};
use crate::domain::{Command, Event, JobState};
use crate::store::{
    AuditRow, EventFilter, Idempotency, JobFilter, JobRow, RequestMeta, StoredEvent, Written,
};

/// Largest page a list returns.
const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, update_job, delete_job))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(run_job))
        .routes(routes!(kill_job))
        .routes(routes!(job_executions))
        .routes(routes!(job_history))
        .routes(routes!(list_events))
        .routes(routes!(list_workers))
}

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub name: String,
    pub command: String,
    pub cron_expr: String,
    pub timezone: String,
    pub timeout_secs: Option<u64>,
    /// Seconds after its planned time by which a tick must start, else it is `missed`;
    /// none: the smaller of 60 s and the time to the next tick.
    pub starting_deadline_secs: Option<u64>,
    /// `forbid`, `allow` or `replace`.
    pub concurrency: String,
    pub paused: bool,
    pub description: String,
    pub env: std::collections::BTreeMap<String, String>,
    /// The job's version: send it back in `If-Match` or `version` to update.
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
    /// The next fire times, in UTC.
    pub next_runs: Vec<DateTime<Utc>>,
}

impl JobView {
    fn new(spec: &JobSpec, version: i64) -> Self {
        Self {
            name: spec.name.to_string(),
            command: spec.command.clone(),
            cron_expr: spec.cron_expr.clone(),
            timezone: spec.timezone.name().to_owned(),
            timeout_secs: spec.timeout_secs,
            starting_deadline_secs: spec.starting_deadline_secs,
            concurrency: spec.concurrency.as_str().to_owned(),
            paused: spec.paused,
            description: spec.description.clone(),
            env: spec.env.clone(),
            version,
            created_at: None,
            created_by: None,
            updated_at: None,
            updated_by: None,
            next_runs: spec.schedule().upcoming(Utc::now(), 5),
        }
    }

    fn from_row(row: &JobRow) -> Self {
        Self {
            created_at: Some(row.created_at),
            created_by: Some(row.created_by.clone()),
            updated_at: Some(row.updated_at),
            updated_by: Some(row.updated_by.clone()),
            ..Self::new(&row.spec, row.version)
        }
    }
}

/// The body of a create or update: a job spec. Unknown fields are refused.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct JobInput {
    /// 1-128 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Run as `/bin/sh -c <command>`; at most 64 KiB.
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
    /// `active` or `paused`.
    status: Option<String>,
    cursor: Option<String>,
    /// Page size, 1-500 (default 50).
    limit: Option<i64>,
}

fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "limit",
            format!("limit: {n} is not between 1 and {MAX_LIMIT}"),
        )),
    }
}

fn job_name(raw: &str) -> Result<JobName, ApiError> {
    JobName::parse(raw)
        .map_err(|e| ApiError::field(StatusCode::NOT_FOUND, "not_found", "name", e.to_string()))
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", params(JobListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let paused = match query.status.as_deref() {
        None | Some("") => None,
        Some("active") => Some(false),
        Some("paused") => Some(true),
        Some(other) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "status",
                format!("status: {other:?} is not one of active, paused"),
            ))
        }
    };
    let limit = limit(query.limit)?;
    let rows = state
        .store
        .jobs(&JobFilter {
            name: query.name,
            paused,
            after_name: query.cursor,
            limit: limit + 1,
        })
        .await?;
    let mut items: Vec<JobView> = rows.iter().map(JobView::from_row).collect();
    let next_cursor = page_cursor(&mut items, limit, |job| job.name.clone());
    Ok(Json(JobPage { items, next_cursor }))
}

/// Keeps `limit` items; returns the cursor of the next page when there was one more.
fn page_cursor<T>(items: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    }
}

#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = JobInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the first answer")),
    responses((status = 201, body = JobView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_job(
    State(state): State<AppState>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let mut spec = JobSpec::from_user_json(&body).map_err(ApiError::invalid)?;
    spec.version = 0;
    let name = spec.name.clone();
    let meta = context.meta(&body);
    let location = format!("/api/v1/jobs/{name}");
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

#[utoipa::path(get, path = "/jobs/{name}", tag = "jobs", params(("name" = String, Path)),
    responses((status = 200, body = JobView, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let row = state
        .store
        .job(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {name} does not exist")))?;
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
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let spec = JobSpec::from_user_json(&body).map_err(ApiError::invalid)?;
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
) -> Result<Response, ApiError> {
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
        ) -> Result<Response, ApiError> {
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
        request_id: meta.request_id.clone()
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

/// Runs a command through the store and turns the result into the response, which is also
/// what a retry with the same Idempotency-Key gets.
async fn write(
    state: &AppState,
    name: &JobName,
    command: Command,
    expected: Option<u64>,
    meta: &RequestMeta,
    status: StatusCode,
    location: Option<String>,
) -> Result<Response, ApiError> {
    let answer = |events: &[StoredEvent], job: &JobState| -> (u16, Value) {
        let body = match (&job.spec, events.last().map(|e| &e.event)) {
            (_, Some(Event::RunRequested { request_id } | Event::KillRequested { request_id })) => {
                json!({ "requestId": request_id, "version": job.version })
            }
            (Some(spec), _) => {
                serde_json::to_value(JobView::new(spec, i64::try_from(job.version).unwrap_or(0)))
                    .unwrap_or(Value::Null)
            }
            (None, _) => Value::Null,
        };
        (status.as_u16(), body)
    };
    let written = state
        .store
        .execute(name, command, expected, meta, answer)
        .await?;
    state.metrics.events_appended(match &written {
        Written::Appended { events, .. } => events.len(),
        Written::Replayed { .. } => 0,
    });
    let (status, body, version) = match written {
        Written::Appended { events, state: job } => {
            let (status, body) = answer(&events, &job);
            (status, body, i64::try_from(job.version).unwrap_or(0))
        }
        Written::Replayed { status, response } => {
            let version = response.get("version").and_then(Value::as_i64).unwrap_or(0);
            (status, response, version)
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, Json(body)).into_response()
    };
    if version > 0 && status != StatusCode::NO_CONTENT {
        set_etag(&mut response, version);
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn set_etag(response: &mut Response, version: i64) {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
}

/// The version the caller expects: `If-Match` (an ETag) wins over a non-zero body `version`.
fn expected_version(headers: &HeaderMap, body_version: u64) -> Result<Option<u64>, ApiError> {
    match headers.get(header::IF_MATCH) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
            text.parse().map(Some).map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "If-Match",
                    "If-Match: expected an ETag such as \"3\"",
                )
            })
        }
        None if body_version > 0 => Ok(Some(body_version)),
        None => Ok(None),
    }
}

impl RequestContext {
    /// The store's view of this request. An idempotency key belongs to its caller (user and
    /// token): another caller's identical key is another key. A retry must mean the same
    /// request — same method, path and JSON body by meaning (key order and whitespace aside).
    pub fn meta(&self, body: &[u8]) -> RequestMeta {
        let idempotency = self.idempotency_key.as_ref().map(|key| {
            let mut hash = Sha256::new();
            hash.update(self.method.as_str().as_bytes());
            hash.update(b" ");
            hash.update(self.uri.path().as_bytes());
            hash.update(b"\n");
            match serde_json::from_slice::<Value>(body) {
                Ok(value) => hash.update(canonical_json(&value).as_bytes()),
                Err(_) => hash.update(body),
            }
            Idempotency {
                key: format!("{}/{key}", self.caller),
                request_hash: format!("{:x}", hash.finalize()),
            }
        });
        RequestMeta {
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            idempotency,
        }
    }
}

/// `value` as JSON text with every object's keys sorted and no whitespace.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::from(key.as_str()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<ExecutionRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    cursor: Option<String>,
    /// Page size, 1-500 (default 50).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/jobs/{name}/executions", tag = "executions", params(("name" = String, Path), PageQuery),
    responses((status = 200, body = ExecutionPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn job_executions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let name = job_name(&name)?;
    let limit = limit(query.limit)?;
    let mut filter = doc! { "jobName": name.as_str() };
    if let Some(cursor) = &query.cursor {
        let (start, run) = cursor
            .split_once('_')
            .and_then(|(start, run)| Some((start.parse::<i64>().ok()?, run.to_owned())))
            .ok_or_else(|| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "cursor",
                    "cursor: not a cursor this API returned",
                )
            })?;
        filter.insert(
            "$or",
            vec![
                doc! { "startTime": { "$lt": start } },
                doc! { "startTime": start, "runId": { "$lt": run } },
            ],
        );
    }
    let mut items: Vec<ExecutionRecord> = state
        .log
        .find(filter)
        .sort(doc! { "startTime": -1, "runId": -1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    let next_cursor = page_cursor(&mut items, limit, |r| {
        format!("{}_{}", r.start_time, r.run_id)
    });
    Ok(Json(ExecutionPage { items, next_cursor }))
}

/// One change in the audit log: to a job, a user or an API token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub seq: i64,
    /// `job`, `user` or `token`.
    pub stream: String,
    /// The job name, user name or token id.
    pub subject: String,
    /// The subject's version after this event.
    pub version: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub request_id: String,
    pub recorded_at: DateTime<Utc>,
    /// The state before the change, when the change touched it.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The state after the change, when the change touched it.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        let to_json = |spec: &JobSpec| serde_json::to_value(spec).ok();
        let field = |name: &str| row.payload.get(name).filter(|v| !v.is_null()).cloned();
        let (before, after) = match serde_json::from_value::<Event>(row.payload.clone()) {
            Ok(Event::JobCreated { after }) => (None, to_json(&after)),
            Ok(
                Event::JobUpdated { before, after }
                | Event::JobPaused { before, after }
                | Event::JobResumed { before, after },
            ) => (to_json(&before), to_json(&after)),
            Ok(Event::JobDeleted { before }) => (to_json(&before), None),
            Ok(Event::RunRequested { .. } | Event::KillRequested { .. }) => (None, None),
            Err(_) => (field("before"), field("after")),
        };
        Self {
            seq: row.seq,
            stream: row.stream,
            subject: row.subject,
            version: row.version,
            kind: row.kind,
            actor: row.actor,
            request_id: row.request_id,
            recorded_at: row.recorded_at,
            before,
            after,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this job's events.
    job: Option<String>,
    /// Only events by this actor.
    actor: Option<String>,
    /// Only events of this type (JobCreated, JobUpdated, JobDeleted, JobPaused, JobResumed,
    /// RunRequested, KillRequested).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// RFC 3339; events at or after.
    since: Option<String>,
    /// RFC 3339; events before.
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn time_param(field: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    field,
                    format!("{field}: {text:?} is not an RFC 3339 time"),
                )
            })
    })
    .transpose()
}

async fn events_page(
    state: &AppState,
    mut filter: EventFilter,
    cursor: Option<&str>,
    limit: i64,
) -> Result<EventPage, ApiError> {
    filter.before_seq = cursor
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "cursor",
                    "cursor: not a cursor this API returned",
                )
            })
        })
        .transpose()?;
    filter.limit = limit + 1;
    let mut items: Vec<AuditEvent> = state
        .store
        .events(&filter)
        .await?
        .into_iter()
        .map(AuditEvent::from)
        .collect();
    let next_cursor = page_cursor(&mut items, limit, |e| e.seq.to_string());
    Ok(EventPage { items, next_cursor })
}

#[utoipa::path(get, path = "/events", tag = "audit", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    if let Some(kind) = &query.kind {
        if !Event::KINDS.contains(&kind.as_str())
            && !crate::accounts::KINDS.contains(&kind.as_str())
        {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "type",
                format!(
                    "type: {kind:?} is not one of {}, {}",
                    Event::KINDS.join(", "),
                    crate::accounts::KINDS.join(", ")
                ),
            ));
        }
    }
    let filter = EventFilter {
        job: query.job,
        actor: query.actor,
        kind: query.kind,
        since: time_param("since", query.since.as_deref())?,
        until: time_param("until", query.until.as_deref())?,
        ..EventFilter::default()
    };
    Ok(Json(
        events_page(&state, filter, query.cursor.as_deref(), limit(query.limit)?).await?,
    ))
}

#[utoipa::path(get, path = "/jobs/{name}/history", tag = "audit", params(("name" = String, Path), PageQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody)))]
async fn job_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let name = job_name(&name)?;
    let filter = EventFilter {
        job: Some(name.to_string()),
        ..EventFilter::default()
    };
    Ok(Json(
        events_page(&state, filter, query.cursor.as_deref(), limit(query.limit)?).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// Each worker's registration: id, hostname, pid, version, startedAt, slots, running,
    /// heartbeatAt, and holds (why it claims nothing now; empty while it claims).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

#[utoipa::path(get, path = "/workers", tag = "workers", responses((status = 200, body = WorkerList), (status = 503, body = ErrorBody)))]
async fn list_workers(State(state): State<AppState>) -> Result<Json<WorkerList>, ApiError> {
    let mut etcd = state.etcd.clone();
    let response = etcd
        .get(state.keys.workers(), Some(GetOptions::new().with_prefix()))
        .await?;
    let items = response
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    Ok(Json(WorkerList { items }))
}
