//! The live workers.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use super::show;
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;

struct WorkerView {
    id: String,
    host: String,
    version: String,
    started: String,
    slots: String,
    /// `key=value`, one per label.
    labels: Vec<String>,
    running: Vec<String>,
    heartbeat: String,
    /// Why the worker claims nothing now; empty while it claims.
    holds: Vec<String>,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    nav: Nav,
    workers: Vec<WorkerView>,
    /// Addresses of the go-crontab workers.
    legacy: Vec<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, HttpError> {
    let fleet = state.reads.workers().await?;
    let workers = fleet
        .workers
        .into_iter()
        .map(|w| WorkerView {
            host: w.hostname,
            version: w.version,
            started: views::when(w.started_at),
            slots: w.slots.to_string(),
            labels: w
                .labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
            running: w
                .running
                .into_iter()
                .map(|run| run.job_name)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            heartbeat: views::when(w.heartbeat_at),
            holds: w
                .holds
                .iter()
                .map(|hold| hold.as_str().replace('_', " "))
                .collect(),
            id: w.id,
        })
        .collect();
    show(&WorkersPage {
        nav: Nav::for_session(&session),
        workers,
        legacy: fleet.legacy.into_iter().map(|w| w.address).collect(),
    })
}
