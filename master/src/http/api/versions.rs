//! A job as it was — at a version (`/jobs/{name}/versions/{version}`) or at a moment (`GET
//! /jobs/{name}?asOf=`, see [`super::jobs`]) — and reverting to a past version, which appends
//! a normal update (with `If-Match`, so a concurrent change is reported, not overwritten).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::job_name;
use super::job_view::JobView;
use super::json_object;
use super::write::{expected_version, write};
use crate::domain::Command;
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiBody, AppState, RequestContext};
use crate::store::PastSpec;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(job_version))
        .routes(routes!(revert_job))
}

/// The body of a revert.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RevertInput {
    /// The past version whose spec the job gets back.
    pub to_version: i64,
}

/// A past spec as the API shows a job: its `version` the one it had, `updatedAt` and
/// `updatedBy` the event's that set it.
pub fn past_view(past: &PastSpec) -> JobView {
    JobView {
        updated_at: Some(past.recorded_at),
        updated_by: Some(past.actor.clone()),
        ..JobView::new(&past.spec, past.version)
    }
}

fn no_version(name: &str, version: i64) -> HttpError {
    HttpError::not_found(format!(
        "job {name} has no version {version} (no change to its spec has that version)"
    ))
}

#[utoipa::path(get, path = "/jobs/{name}/versions/{version}", tag = "jobs",
    params(("name" = String, Path), ("version" = i64, Path, description = "A version the job had (its ETag then)")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
async fn job_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Json<JobView>, HttpError> {
    let name = job_name(&name)?;
    let past = state
        .store
        .job_version(&name, version)
        .await?
        .ok_or_else(|| no_version(name.as_str(), version))?;
    Ok(Json(past_view(&past)))
}

/// Give the job back the spec it had at `toVersion`: appended as an update of the current
/// version, checked against `If-Match` when sent and validated as any update is. Like any
/// update, it keeps the job's pause as it is.
#[utoipa::path(post, path = "/jobs/{name}/revert", tag = "jobs", request_body = RevertInput,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag you last saw"),
           ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn revert_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    context: RequestContext,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let name = job_name(&name)?;
    let object = json_object(&body, &["toVersion"])?;
    let to_version = match object.get("toVersion") {
        Some(Value::Number(n)) => n.as_i64().filter(|v| *v > 0),
        _ => None,
    }
    .ok_or_else(|| {
        HttpError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "toVersion",
            "toVersion: is required, a version number above 0",
        )
    })?;
    let past = state
        .store
        .job_version(&name, to_version)
        .await?
        .ok_or_else(|| no_version(name.as_str(), to_version))?;
    let spec = past.revived().map_err(HttpError::invalid)?;
    let expected = expected_version(&headers, 0)?;
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
