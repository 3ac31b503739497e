//! A job's past version: its spec as it was, what changed from it to the current version (or
//! to another, `?against=`), and for admins a button that reverts the job to it — a normal
//! update of the version the page was shown at, so a change made meanwhile is reported.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cronfleet_common::JobSpec;
use serde::Deserialize;

use super::{meta, no_such_job, parse_name, show};
use crate::accounts::Session;
use crate::domain::Command;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::views;
use crate::http::AppState;
use crate::store::PastSpec;

#[derive(Template)]
#[template(path = "job_version.html")]
struct JobVersionPage {
    nav: Nav,
    job: String,
    version: i64,
    kind: String,
    actor: String,
    at: String,
    /// The spec as it was, as pretty JSON.
    spec: String,
    /// The version compared with, and whether it is the current one.
    against: i64,
    against_current: bool,
    /// `field: old → new` from this version to the one compared with.
    diff: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct VersionQuery {
    against: Option<i64>,
}

/// What the revert button sends: the version the job was at when the page was shown.
#[derive(Debug, Deserialize)]
pub(super) struct RevertForm {
    current: u64,
}

fn no_version() -> HttpError {
    HttpError::not_found("The job has no such version.")
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path((name, version)): Path<(String, i64)>,
    Query(query): Query<VersionQuery>,
) -> Result<Response, HttpError> {
    let name = parse_name(&name)?;
    let row = state.store.job(&name).await?.ok_or_else(no_such_job)?;
    let past = state
        .store
        .job_version(&name, version)
        .await?
        .ok_or_else(no_version)?;
    let (against, other) = match query.against {
        Some(against) if against != row.version => {
            let other = state
                .store
                .job_version(&name, against)
                .await?
                .ok_or_else(no_version)?;
            (against, other.spec)
        }
        _ => (row.version, row.spec.clone()),
    };
    // A revert keeps the job's pause as it is, so the pause is no difference here.
    let json = |spec: &JobSpec| {
        let mut value = serde_json::to_value(spec).ok();
        if let Some(serde_json::Value::Object(object)) = &mut value {
            object.remove("paused");
        }
        value
    };
    let PastSpec {
        spec,
        recorded_at,
        actor,
        kind,
        ..
    } = past;
    show(&JobVersionPage {
        nav: Nav::for_session(&session),
        job: name.to_string(),
        version,
        kind,
        actor,
        at: views::at(recorded_at, row.spec.timezone),
        diff: views::diff(json(&spec).as_ref(), json(&other).as_ref()),
        spec: serde_json::to_string_pretty(&spec).unwrap_or_default(),
        against,
        against_current: against == row.version,
    })
}

pub(super) async fn revert(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    Path((name, version)): Path<(String, i64)>,
    Form(form): Form<RevertForm>,
) -> Result<Response, HttpError> {
    let name = parse_name(&name)?;
    let past = state
        .store
        .job_version(&name, version)
        .await?
        .ok_or_else(no_version)?;
    let spec = past.revived().map_err(HttpError::invalid)?;
    state
        .store
        .execute(
            &name,
            Command::UpdateJob(spec),
            Some(form.current),
            &meta(&session, &id),
        )
        .await
        .map_err(|e| match HttpError::from(e) {
            conflict if conflict.status == StatusCode::CONFLICT => HttpError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                "Someone changed this job since this page was shown; open the version again to see what reverting would change now.",
            ),
            other => other,
        })?;
    let to = format!("/jobs/{}?done=reverted", views::path_segment(name.as_str()));
    Ok(Redirect::to(&to).into_response())
}
