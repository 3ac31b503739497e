//! A job's execution records, newest first, paged by a cursor.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{bad_cursor, job_name, limit, PageQuery};
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiQuery, AppState};
use crate::read::{Run, RunCursor};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(job_executions))
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
