//! One run's page.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;

use super::show;
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;

struct ExecutionView {
    run_id: String,
    job: String,
    status: String,
    err: String,
    planned: String,
    scheduled: String,
    started: String,
    ended: String,
    duration: String,
    exit: String,
    worker: String,
    fencing_token: i64,
    trigger: String,
    command: String,
    output: String,
    output_bytes: i64,
    truncated: bool,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    nav: Nav,
    run: ExecutionView,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(run_id): Path<String>,
) -> Result<Response, HttpError> {
    let nav = Nav::for_session(&session);
    let run = state
        .reads
        .execution(&run_id)
        .await?
        .ok_or_else(|| HttpError::not_found("There is no such run."))?;
    let r = run.record;
    let run = ExecutionView {
        status: r.status.as_str().to_owned(),
        planned: views::when_ms(r.plan_time),
        scheduled: views::when_ms(r.schedule_time),
        started: views::when_ms(r.start_time),
        ended: views::when_ms(r.end_time),
        duration: views::duration_ms(r.end_time - r.start_time),
        exit: views::exit(&r),
        trigger: format!("{:?}", r.trigger).to_lowercase(),
        run_id: r.run_id,
        job: r.job_name,
        err: r.err,
        worker: if run.legacy {
            "a go-crontab worker (its records do not say which)".to_owned()
        } else {
            r.worker_id
        },
        fencing_token: r.fencing_token,
        command: r.command,
        output: r.output,
        output_bytes: r.output_bytes,
        truncated: r.truncated,
    };
    show(&ExecutionPage { nav, run })
}
