//! The admin pages: server-rendered askama HTML, no JavaScript, one module per resource. Every
//! form posts and redirects (post-redirect-get); every form carries the session's CSRF token,
//! checked by [`super::auth::authorize`]. Everything shown is escaped by askama.
//!
//! Handlers return `Result<Response, HttpError>` like the API's; [`html_errors`] renders an
//! error answer as a page in the layout for the signed-in user.

mod audit;
mod channel_form;
mod channel_page;
mod channels;
mod deliveries;
mod executions;
mod form_check;
mod job_form;
mod job_outcomes;
mod job_page;
mod job_policy;
mod job_stats;
mod job_versions;
mod jobs;
mod running;
mod runs;
mod sign_in;
mod tokens;
mod users;
mod workers;

use askama::Template;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use cronfleet_common::JobName;
use serde::Deserialize;

use super::error::{as_page, HttpError};
use super::layout::{render, Nav};
use super::telemetry::RequestId;
use super::AppState;
use crate::accounts::Session;
use crate::store::RequestMeta;

pub use audit::change_view;

/// Rows per page: each row of the dashboard costs one indexed MongoDB lookup for its last run.
const PAGE_SIZE: i64 = 25;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(jobs::dashboard))
        .route("/login", get(sign_in::form).post(sign_in::login))
        .route("/logout", post(sign_in::logout))
        .route("/jobs/new", get(job_form::new).post(job_form::create))
        .route("/jobs/{name}", get(job_page::detail))
        .route("/jobs/{name}/stats", get(job_stats::page))
        .route("/jobs/{name}/versions/{version}", get(job_versions::page))
        .route(
            "/jobs/{name}/versions/{version}/revert",
            post(job_versions::revert),
        )
        .route(
            "/jobs/{name}/edit",
            get(job_form::edit).post(job_form::update),
        )
        .route("/jobs/{name}/{action}", post(jobs::action))
        .route("/executions/{run_id}", get(executions::page))
        .route("/running", get(running::page))
        .route("/runs", get(runs::page))
        .route("/workers", get(workers::page))
        .route("/audit", get(audit::page))
        .route("/channels", get(channels::list).post(channels::create))
        .route("/channels/{name}", get(channel_page::detail))
        .route("/channels/{name}/edit", post(channel_page::update))
        .route("/channels/{name}/delete", post(channel_page::delete))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{name}", post(users::change))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
        .route("/static/style.css", get(stylesheet))
        .layer(middleware::from_fn(html_errors))
}

/// Renders a handler's error answer as a page in the layout of whoever is signed in.
async fn html_errors(request: Request, next: Next) -> Response {
    let nav = request
        .extensions()
        .get::<Session>()
        .map(Nav::for_session)
        .unwrap_or_default();
    as_page(next.run(request).await, &nav)
}

/// A page, or the internal error of a template that cannot render.
fn show(template: &impl Template) -> Result<Response, HttpError> {
    Ok(render(template)?)
}

/// The store's view of a page's request: who, and its request id.
fn meta(session: &Session, id: &RequestId) -> RequestMeta {
    RequestMeta {
        actor: session.principal.actor(),
        request_id: id.0.clone(),
        idempotency: None,
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../../static/style.css"),
    )
        .into_response()
}

/// `?done=`: what the redirect that led here did, for the flash message.
#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

fn no_such_job() -> HttpError {
    HttpError::not_found("There is no such job.")
}

fn parse_name(raw: &str) -> Result<JobName, HttpError> {
    JobName::parse(raw).map_err(|_| no_such_job())
}

/// Unknown pages.
pub async fn not_found(session: Option<Extension<Session>>) -> Response {
    let nav = session
        .map(|Extension(s)| Nav::for_session(&s))
        .unwrap_or_default();
    HttpError::new(StatusCode::NOT_FOUND, "not_found", "There is no such page.").page(&nav)
}
