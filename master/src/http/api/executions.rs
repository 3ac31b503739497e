//! A job's execution records, newest first, paged by a cursor.

use axum::extract::{Path, State};
use axum::Json;
use cronfleet_common::ExecutionRecord;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{bad_cursor, job_name, limit, page_cursor, PageQuery};
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiQuery, AppState};
use crate::read::RunCursor;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(job_executions))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<ExecutionRecord>,
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
    let mut items = state
        .reads
        .executions(&name, cursor.as_ref(), limit + 1)
        .await?;
    let next_cursor = page_cursor(&mut items, limit, |r| RunCursor::after(r).to_text());
    Ok(Json(ExecutionPage { items, next_cursor }))
}
