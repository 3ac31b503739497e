//! The REST API under `/api/v1`: one module per resource, and what their lists share (page
//! size, cursors, the job name in the path, RFC 3339 parameters).

pub mod audit;
pub mod channels;
pub mod deliveries;
pub mod executions;
mod job_view;
pub mod jobs;
pub mod policy;
pub mod running;
pub mod stats;
pub mod tokens;
pub mod users;
pub mod versions;
pub mod workers;
mod write;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use cronfleet_common::job::reject_unknown_fields;
use cronfleet_common::{ChannelName, FieldError, JobName};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;

use super::error::HttpError;
use super::AppState;

/// Largest page a list returns.
const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(jobs::router())
        .merge(versions::router())
        .merge(executions::router())
        .merge(running::router())
        .merge(stats::router())
        .merge(audit::router())
        .merge(workers::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(channels::router())
        .merge(deliveries::router())
}

/// A page of a list: a cursor and a size.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    cursor: Option<String>,
    /// Page size, 1-500 (default 50).
    limit: Option<i64>,
}

fn limit(raw: Option<i64>) -> Result<i64, HttpError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(HttpError::field(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "limit",
            format!("limit: {n} is not between 1 and {MAX_LIMIT}"),
        )),
    }
}

fn bad_cursor() -> HttpError {
    HttpError::field(
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "cursor",
        "cursor: not a cursor this API returned",
    )
}

fn job_name(raw: &str) -> Result<JobName, HttpError> {
    JobName::parse(raw)
        .map_err(|e| HttpError::field(StatusCode::NOT_FOUND, "not_found", "name", e.to_string()))
}

fn channel_name(raw: &str) -> Result<ChannelName, HttpError> {
    ChannelName::parse(raw, "name")
        .map_err(|e| HttpError::field(StatusCode::NOT_FOUND, "not_found", "name", e.to_string()))
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

/// An optional RFC 3339 query parameter.
fn time_param(field: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, HttpError> {
    raw.map(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                HttpError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    field,
                    format!("{field}: {text:?} is not an RFC 3339 time"),
                )
            })
    })
    .transpose()
}

/// A JSON object body with no fields but `known`.
fn json_object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, HttpError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => {
            reject_unknown_fields(&object, known).map_err(HttpError::invalid)?;
            Ok(object)
        }
        Ok(_) => Err(HttpError::invalid(FieldError::new(
            "body",
            "must be a JSON object",
        ))),
        Err(e) => Err(HttpError::invalid(FieldError::new(
            "body",
            format!("is not valid JSON: {e}"),
        ))),
    }
}
