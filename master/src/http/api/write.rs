//! A job command through the store, answered (and replayed for a retried Idempotency-Key)
//! with the job as it became, its ETag, and the status the route promises.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::JobName;
use serde_json::{json, Value};

use super::job_view::JobView;
use crate::domain::{Command, Event};
use crate::http::error::HttpError;
use crate::http::AppState;
use crate::store::{RequestMeta, StoredEvent};

/// Runs a command through the store and answers with what it appended and the job after it;
/// a retry with the same Idempotency-Key gets the same answer from the same events.
pub async fn write(
    state: &AppState,
    name: &JobName,
    command: Command,
    expected: Option<u64>,
    meta: &RequestMeta,
    status: StatusCode,
    location: Option<String>,
) -> Result<Response, HttpError> {
    let written = state.store.execute(name, command, expected, meta).await?;
    if !written.replayed {
        state.metrics.events_appended(written.events.len());
    }
    let job = &written.state;
    let version = i64::try_from(job.spec_version()).unwrap_or(0);
    let body = match (&job.spec, written.events.last().map(|e| &e.event)) {
        (_, Some(Event::RunRequested { request_id, .. } | Event::KillRequested { request_id })) => {
            json!({ "requestId": request_id, "version": version })
        }
        (Some(spec), _) => {
            let view = stamped(state, name, JobView::new(spec, version), &written.events).await?;
            serde_json::to_value(view).unwrap_or(Value::Null)
        }
        (None, _) => Value::Null,
    };
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

/// The view with who created and last changed the job, and when: the change is the last event
/// this write appended (or, replayed, appended the first time), so a replay answers the same;
/// the creation is that event when it created the job, else the read model's, which no later
/// write changes. A write that appended nothing answers the read model's.
async fn stamped(
    state: &AppState,
    name: &JobName,
    mut view: JobView,
    events: &[StoredEvent],
) -> Result<JobView, HttpError> {
    if let Some(last) = events.last() {
        view.updated_at = Some(last.recorded_at);
        view.updated_by = Some(last.actor.clone());
        if matches!(last.event, Event::JobCreated { .. }) {
            view.created_at = Some(last.recorded_at);
            view.created_by = Some(last.actor.clone());
            return Ok(view);
        }
    }
    if let Some(row) = state.store.job(name).await? {
        view.created_at = Some(row.created_at);
        view.created_by = Some(row.created_by);
        if events.is_empty() {
            view.updated_at = Some(row.updated_at);
            view.updated_by = Some(row.updated_by);
        }
    }
    Ok(view)
}

pub fn set_etag(response: &mut Response, version: i64) {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
}

/// The version the caller expects: `If-Match` (an ETag) wins over a non-zero body `version`.
pub fn expected_version(headers: &HeaderMap, body_version: u64) -> Result<Option<u64>, HttpError> {
    match headers.get(header::IF_MATCH) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
            text.parse().map(Some).map_err(|_| {
                HttpError::field(
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
