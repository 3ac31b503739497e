//! The admin pages: server-rendered askama HTML, no JavaScript. Every form posts and redirects
//! (post-redirect-get); every form carries the session's CSRF token, checked by
//! [`super::auth::authorize`]. Everything shown is escaped by askama.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::Utc;
use cronfleet_common::{ExecutionRecord, JobName, JobSpec, MissReason};
use etcd_client::GetOptions;
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::SESSION_COOKIE;
use super::views;
use super::AppState;
use crate::accounts::Session;
use crate::domain::{Command, DomainError};
use crate::identity::{check_user_name, verify_decoy, Role};
use crate::store::{EventFilter, JobFilter, RequestMeta, StoreError};

/// Rows per page: each row costs one indexed MongoDB lookup for its last run.
const PAGE_SIZE: i64 = 25;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/jobs/new", get(new_job).post(create_job))
        .route("/jobs/{name}", get(job_detail))
        .route("/jobs/{name}/edit", get(edit_job).post(update_job))
        .route("/jobs/{name}/{action}", post(job_action))
        .route("/executions/{run_id}", get(execution))
        .route("/workers", get(workers))
        .route("/audit", get(audit))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/static/style.css", get(stylesheet))
}

/// What the layout needs: who is signed in and the session's CSRF token.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub user: Option<String>,
    pub role: String,
    pub operator: bool,
    pub admin: bool,
    pub csrf: String,
    pub flash: Option<String>,
}

impl Nav {
    /// The layout for a signed-in session.
    pub fn for_session(session: &Session) -> Self {
        Self::new(session, None)
    }

    fn new(session: &Session, done: Option<&str>) -> Self {
        Self {
            user: Some(session.principal.user.clone()),
            role: session.principal.role.to_string(),
            operator: session.principal.role >= Role::Operator,
            admin: session.principal.role >= Role::Admin,
            csrf: session.csrf.clone(),
            flash: done.and_then(flash),
        }
    }
}

/// The message for a `?done=` code after a redirect.
fn flash(code: &str) -> Option<String> {
    let text = match code {
        "created" => "Job created.",
        "updated" => "Job saved.",
        "deleted" => "Job deleted.",
        "pause" => "Job paused.",
        "resume" => "Job resumed.",
        "run" => "Run requested: a worker starts it within a second.",
        "kill" => "Kill requested: running runs get SIGTERM now.",
        "revoked" => "Token revoked.",
        _ => return None,
    };
    Some(text.to_owned())
}

fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not render the page: {e}"),
            Nav::default(),
        ),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: String,
    message: String,
}

/// An error as a page in the site's layout.
pub fn error_page(status: StatusCode, message: &str, nav: Nav) -> Response {
    let page = ErrorPage {
        nav,
        status: status.to_string(),
        message: message.to_owned(),
    };
    let html = page.render().unwrap_or_else(|_| message.to_owned());
    (status, Html(html)).into_response()
}

fn store_error_page(error: impl Into<super::error::ApiError>, nav: Nav) -> Response {
    let error = error.into();
    error_page(error.status, &error.message, nav)
}

fn meta(session: &Session) -> RequestMeta {
    RequestMeta {
        actor: session.principal.actor(),
        request_id: uuid::Uuid::now_v7().to_string(),
        idempotency: None,
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    name: String,
    error: Option<String>,
}

async fn login_form() -> Response {
    render(&LoginPage {
        nav: Nav::default(),
        name: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "the sign-in form was incomplete",
            Nav::default(),
        );
    };
    let refuse = |message: &str, status: StatusCode| {
        let page = LoginPage {
            nav: Nav::default(),
            name: form.name.clone(),
            error: Some(message.to_owned()),
        };
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    // A name no user can have is refused like a wrong password, after the same hash work,
    // and is neither looked up nor remembered by the throttle.
    if check_user_name(&form.name).is_err() {
        verify_decoy(&form.password);
        let page = LoginPage {
            nav: Nav::default(),
            name: String::new(),
            error: Some("Wrong user name or password.".to_owned()),
        };
        let mut response = render(&page);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    if state.throttle.blocked(&form.name) {
        return refuse(
            "Too many failed sign-ins for this user; try again in 15 minutes.",
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let principal = match state.store.check_password(&form.name, &form.password).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            state.throttle.failed(&form.name);
            return refuse("Wrong user name or password.", StatusCode::UNAUTHORIZED);
        }
        Err(e) => return store_error_page(e, Nav::default()),
    };
    state.throttle.succeeded(&form.name);
    match state.store.open_session(&principal).await {
        Ok(id) => {
            let mut response = Redirect::to("/").into_response();
            let secure = if state.secure_cookies { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}"
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => store_error_page(e, Nav::default()),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = super::auth::session_cookie(&headers) {
        if let Err(e) = state.store.close_session(id).await {
            return store_error_page(e, Nav::default());
        }
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

struct LastRun {
    status: String,
    when: String,
    duration: String,
}

struct JobRowView {
    name: String,
    cron_expr: String,
    schedule_words: String,
    timezone: String,
    next_run: String,
    paused: bool,
    running: usize,
    last: Option<LastRun>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Nav,
    jobs: Vec<JobRowView>,
    filter_name: String,
    filter_status: String,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct DashboardQuery {
    name: Option<String>,
    status: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

async fn dashboard(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DashboardQuery>,
) -> Response {
    let nav = Nav::new(&session, query.done.as_deref());
    let name = query.name.unwrap_or_default();
    let status = query.status.unwrap_or_default();
    let paused = match status.as_str() {
        "paused" => Some(true),
        "active" => Some(false),
        _ => None,
    };
    let filter = JobFilter {
        name: Some(name.clone()).filter(|n| !n.is_empty()),
        paused,
        after_name: query.after,
        limit: PAGE_SIZE + 1,
    };
    let mut rows = match state.store.jobs(&filter).await {
        Ok(rows) => rows,
        Err(e) => return store_error_page(e, nav),
    };
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let names: Vec<String> = rows.iter().map(|r| r.spec.name.to_string()).collect();
    let (last, running) = tokio::join!(last_runs(&state, &names), running_counts(&state));
    let now = Utc::now();
    let jobs = rows
        .iter()
        .map(|row| {
            let spec = &row.spec;
            let name = spec.name.to_string();
            JobRowView {
                cron_expr: spec.cron_expr.clone(),
                schedule_words: views::schedule_words(&spec.cron_expr),
                timezone: spec.timezone.name().to_owned(),
                next_run: if spec.paused {
                    "paused".to_owned()
                } else {
                    spec.schedule()
                        .next_after(now)
                        .map_or_else(|| "never".to_owned(), |t| views::when_in(t, spec.timezone))
                },
                paused: spec.paused,
                running: running.get(&name).copied().unwrap_or(0),
                last: last.get(&name).map(|r| LastRun {
                    status: r.status.as_str().to_owned(),
                    when: views::when_ms(r.start_time),
                    duration: views::duration_ms(r.end_time - r.start_time),
                }),
                name,
            }
        })
        .collect();
    let next_page = more.then(|| {
        let after = names.last().cloned().unwrap_or_default();
        format!(
            "/?{}",
            serde_urlencoded::to_string([
                ("name", name.as_str()),
                ("status", status.as_str()),
                ("after", after.as_str())
            ])
            .unwrap_or_default()
        )
    });
    render(&JobsPage {
        nav,
        jobs,
        filter_name: name,
        filter_status: status,
        next_page,
    })
}

/// The newest record of each named job: one indexed `(jobName, startTime desc)` lookup per job,
/// all at once (an aggregation over the whole collection is far slower).
async fn last_runs(state: &AppState, names: &[String]) -> HashMap<String, ExecutionRecord> {
    let lookups = names.iter().map(|name| {
        let log = state.log.clone();
        async move {
            log.find_one(doc! { "jobName": name.as_str() })
                .sort(doc! { "startTime": -1 })
                .await
                .ok()
                .flatten()
        }
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
        .map(|record| (record.job_name.clone(), record))
        .collect()
}

/// Runs in progress per job, from the workers' keys: a `forbid` run holds `lock/<job>`, runs
/// that may overlap also have `runs/<job>/<run>`. A run is counted once by its run id; a lock
/// without one (held by a go-crontab worker) counts as one run.
async fn running_counts(state: &AppState) -> HashMap<String, usize> {
    let mut etcd = state.etcd.clone();
    let (Ok(runs), Ok(locks)) = (
        etcd.get(
            state.keys.runs(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await,
        etcd.get(state.keys.locks(), Some(GetOptions::new().with_prefix()))
            .await,
    ) else {
        return HashMap::new();
    };
    let mut running: BTreeSet<(String, String)> = BTreeSet::new();
    for kv in runs.kvs() {
        if let Some((job, run_id)) = state.keys.run_of(kv.key()) {
            running.insert((job.to_string(), run_id.to_owned()));
        }
    }
    for kv in locks.kvs() {
        if let Some(job) = state.keys.job_of(kv.key()) {
            let run_id = serde_json::from_slice::<Value>(kv.value())
                .ok()
                .and_then(|holder| holder["runId"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(kv.key()).into_owned());
            running.insert((job.to_string(), run_id));
        }
    }
    let mut counts = HashMap::new();
    for (job, _) in running {
        *counts.entry(job).or_insert(0) += 1;
    }
    counts
}

struct JobView {
    name: String,
    command: String,
    cron_expr: String,
    schedule_words: String,
    timezone: String,
    paused: bool,
    timeout: String,
    starting_deadline: String,
    concurrency: String,
    description: String,
    version: i64,
    updated_at: String,
    updated_by: String,
    next_runs: Vec<String>,
}

struct RunView {
    run_id: String,
    status: String,
    /// Why a missed tick did not start.
    reason: Option<&'static str>,
    planned: String,
    started: String,
    duration: String,
    exit: String,
    worker: String,
    excerpt: String,
}

struct ChangeView {
    seq: i64,
    kind: String,
    actor: String,
    at: String,
    version: i64,
    subject: String,
    diff: Vec<String>,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    job: JobView,
    executions: Vec<RunView>,
    history: Vec<ChangeView>,
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

fn parse_name(raw: &str, nav: &Nav) -> Result<JobName, Box<Response>> {
    JobName::parse(raw).map_err(|_| {
        Box::new(error_page(
            StatusCode::NOT_FOUND,
            "There is no such job.",
            nav.clone(),
        ))
    })
}

async fn job_detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Response {
    let nav = Nav::new(&session, query.done.as_deref());
    let name = match parse_name(&name, &nav) {
        Ok(name) => name,
        Err(page) => return *page,
    };
    let row = match state.store.job(&name).await {
        Ok(Some(row)) => row,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "There is no such job.", nav),
        Err(e) => return store_error_page(e, nav),
    };
    let spec = &row.spec;
    let job = JobView {
        name: name.to_string(),
        command: spec.command.clone(),
        cron_expr: spec.cron_expr.clone(),
        schedule_words: views::schedule_words(&spec.cron_expr),
        timezone: spec.timezone.name().to_owned(),
        paused: spec.paused,
        timeout: views::timeout(spec),
        starting_deadline: views::starting_deadline(spec),
        concurrency: spec.concurrency.as_str().to_owned(),
        description: spec.description.clone(),
        version: row.version,
        updated_at: views::when(row.updated_at),
        updated_by: row.updated_by.clone(),
        next_runs: spec
            .schedule()
            .upcoming(Utc::now(), 5)
            .into_iter()
            .map(|t| views::when_in(t, spec.timezone))
            .collect(),
    };
    let records: Vec<ExecutionRecord> = match state
        .log
        .find(doc! { "jobName": name.as_str() })
        .sort(doc! { "startTime": -1 })
        .limit(20)
        .await
    {
        Ok(cursor) => cursor.try_collect().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let executions = records
        .iter()
        .map(|r| RunView {
            run_id: r.run_id.clone(),
            status: r.status.as_str().to_owned(),
            reason: r.reason.map(MissReason::as_str),
            planned: views::when_ms(r.plan_time),
            started: views::when_ms(r.start_time),
            duration: views::duration_ms(r.end_time - r.start_time),
            exit: views::exit(r),
            worker: r.worker_id.clone(),
            excerpt: views::excerpt(&r.output),
        })
        .collect();
    let filter = EventFilter {
        job: Some(name.to_string()),
        limit: 20,
        ..EventFilter::default()
    };
    let history = match state.store.events(&filter).await {
        Ok(events) => events.into_iter().map(change_view).collect(),
        Err(e) => return store_error_page(e, nav),
    };
    render(&JobPage {
        nav,
        job,
        executions,
        history,
    })
}

fn change_view(row: crate::store::AuditRow) -> ChangeView {
    let event = super::api::AuditEvent::from(row);
    ChangeView {
        seq: event.seq,
        diff: views::diff(event.before.as_ref(), event.after.as_ref()),
        kind: event.kind,
        actor: event.actor,
        at: views::when(event.recorded_at),
        version: event.version,
        subject: event.subject,
    }
}

/// The job form's fields as typed, so a refused form comes back as it was.
#[derive(Debug, Clone, Default, Deserialize)]
struct JobForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    command: String,
    #[serde(default, rename = "cronExpr")]
    cron_expr: String,
    #[serde(default)]
    timezone: String,
    #[serde(default, rename = "timeoutSecs")]
    timeout_secs: String,
    #[serde(default, rename = "startingDeadlineSecs")]
    starting_deadline_secs: String,
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    description: String,
    /// `NAME=value` lines.
    #[serde(default)]
    env: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    intent: String,
}

impl JobForm {
    fn from_spec(spec: &JobSpec, version: i64) -> Self {
        Self {
            name: spec.name.to_string(),
            command: spec.command.clone(),
            cron_expr: spec.cron_expr.clone(),
            timezone: spec.timezone.name().to_owned(),
            timeout_secs: spec.timeout_secs.map(|t| t.to_string()).unwrap_or_default(),
            starting_deadline_secs: spec
                .starting_deadline_secs
                .map(|t| t.to_string())
                .unwrap_or_default(),
            concurrency: spec.concurrency.as_str().to_owned(),
            description: spec.description.clone(),
            env: spec
                .env
                .iter()
                .map(|(name, value)| format!("{name}={value}\n"))
                .collect(),
            version: version.to_string(),
            intent: String::new(),
        }
    }

    /// The spec, through the same validation as the API.
    fn spec(&self, paused: bool) -> Result<JobSpec, (String, String)> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name.trim()));
        body.insert("command".into(), json!(self.command.replace("\r\n", "\n")));
        body.insert("cronExpr".into(), json!(self.cron_expr.trim()));
        if !self.timezone.trim().is_empty() {
            body.insert("timezone".into(), json!(self.timezone.trim()));
        }
        for (field, text) in [
            ("timeoutSecs", &self.timeout_secs),
            ("startingDeadlineSecs", &self.starting_deadline_secs),
        ] {
            if !text.trim().is_empty() {
                let secs = text.trim().parse::<u64>().map_err(|_| {
                    (
                        field.to_owned(),
                        format!("{field}: must be a whole number of seconds"),
                    )
                })?;
                body.insert(field.into(), json!(secs));
            }
        }
        if !self.concurrency.is_empty() {
            body.insert("concurrency".into(), json!(self.concurrency));
        }
        body.insert("description".into(), json!(self.description));
        let mut env = Map::new();
        for line in self.env.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.split_once('=') {
                Some((name, value)) => env.insert(name.trim().to_owned(), json!(value)),
                None => return Err(("env".into(), format!("env: {line:?} is not NAME=value"))),
            };
        }
        body.insert("env".into(), Value::Object(env));
        body.insert("paused".into(), json!(paused));
        JobSpec::from_user_json(Value::Object(body).to_string().as_bytes())
            .map_err(|e| (e.field.clone(), e.to_string()))
    }
}

#[derive(Template)]
#[template(path = "job_form.html")]
struct JobFormPage {
    nav: Nav,
    form: JobForm,
    editing: bool,
    errors: HashMap<String, String>,
    /// An error about any environment variable (`env` or `env.NAME`).
    env_error: Option<String>,
    preview: Vec<String>,
    conflict: Option<String>,
}

impl JobFormPage {
    fn new(
        nav: Nav,
        form: JobForm,
        editing: bool,
        errors: HashMap<String, String>,
        preview: Vec<String>,
        conflict: Option<String>,
    ) -> Self {
        let env_error = errors
            .iter()
            .find(|(field, _)| field.starts_with("env"))
            .map(|(_, e)| e.clone());
        Self {
            nav,
            form,
            editing,
            errors,
            env_error,
            preview,
            conflict,
        }
    }
}

async fn new_job(Extension(session): Extension<Session>) -> Response {
    let form = JobForm {
        timezone: "UTC".into(),
        concurrency: "forbid".into(),
        version: "0".into(),
        ..JobForm::default()
    };
    render(&JobFormPage::new(
        Nav::new(&session, None),
        form,
        false,
        HashMap::new(),
        Vec::new(),
        None,
    ))
}

async fn edit_job(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let nav = Nav::new(&session, None);
    let name = match parse_name(&name, &nav) {
        Ok(name) => name,
        Err(page) => return *page,
    };
    match state.store.job(&name).await {
        Ok(Some(row)) => {
            let form = JobForm::from_spec(&row.spec, row.version);
            render(&JobFormPage::new(
                nav,
                form,
                true,
                HashMap::new(),
                Vec::new(),
                None,
            ))
        }
        Ok(None) => error_page(StatusCode::NOT_FOUND, "There is no such job.", nav),
        Err(e) => store_error_page(e, nav),
    }
}

async fn create_job(
    state: State<AppState>,
    session: Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    save_job(state, session, None, body).await
}

async fn update_job(
    state: State<AppState>,
    session: Extension<Session>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    save_job(state, session, Some(name), body).await
}

async fn save_job(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    editing: Option<String>,
    body: axum::body::Bytes,
) -> Response {
    let nav = Nav::new(&session, None);
    let Ok(mut form) = serde_urlencoded::from_bytes::<JobForm>(&body) else {
        return error_page(StatusCode::BAD_REQUEST, "The form could not be read.", nav);
    };
    if let Some(name) = &editing {
        form.name.clone_from(name);
    }
    let page = |form: JobForm,
                errors: HashMap<String, String>,
                preview: Vec<String>,
                conflict: Option<String>,
                status: StatusCode| {
        let page = JobFormPage::new(
            nav.clone(),
            form,
            editing.is_some(),
            errors,
            preview,
            conflict,
        );
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    let spec = match form.spec(false) {
        Ok(spec) => spec,
        Err((field, message)) => {
            return page(
                form,
                HashMap::from([(field, message)]),
                Vec::new(),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    if form.intent == "preview" {
        let preview = spec
            .schedule()
            .upcoming(Utc::now(), 5)
            .into_iter()
            .map(|t| views::when_in(t, spec.timezone))
            .collect();
        return page(form, HashMap::new(), preview, None, StatusCode::OK);
    }
    let name = spec.name.clone();
    let (command, expected, done) = match &editing {
        None => (Command::CreateJob(spec), None, "created"),
        Some(_) => (
            Command::UpdateJob(spec),
            form.version.parse::<u64>().ok().filter(|v| *v > 0),
            "updated",
        ),
    };
    match state
        .store
        .execute(&name, command, expected, &meta(&session), |_, _| {
            (200, Value::Null)
        })
        .await
    {
        Ok(_) => Redirect::to(&format!("/jobs/{name}?done={done}")).into_response(),
        Err(StoreError::Domain(DomainError::VersionConflict { current, .. })) => {
            let message = format!(
                "Someone changed this job while you were editing it (it is now at version {current}). Reload it to see their change; your edits are below."
            );
            page(
                form,
                HashMap::new(),
                Vec::new(),
                Some(message),
                StatusCode::CONFLICT,
            )
        }
        Err(StoreError::Domain(DomainError::AlreadyExists(_))) => {
            let errors = HashMap::from([(
                "name".to_owned(),
                "name: a job with this name already exists".to_owned(),
            )]);
            page(form, errors, Vec::new(), None, StatusCode::CONFLICT)
        }
        Err(e) => store_error_page(e, nav),
    }
}

#[derive(Deserialize)]
struct ConfirmForm {
    confirm: Option<String>,
}

async fn job_action(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path((name, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let nav = Nav::new(&session, None);
    let name = match parse_name(&name, &nav) {
        Ok(name) => name,
        Err(page) => return *page,
    };
    let needed = if action == "delete" {
        Role::Admin
    } else {
        Role::Operator
    };
    if session.principal.role < needed {
        return error_page(
            StatusCode::FORBIDDEN,
            &format!("This needs the {needed} role."),
            nav,
        );
    }
    let request_id = uuid::Uuid::now_v7().to_string();
    let command = match action.as_str() {
        "pause" => Command::PauseJob,
        "resume" => Command::ResumeJob,
        "run" => Command::RunJobNow { request_id },
        "kill" => Command::KillJob { request_id },
        "delete" => {
            let confirmed = serde_urlencoded::from_bytes::<ConfirmForm>(&body)
                .ok()
                .and_then(|f| f.confirm);
            if confirmed.as_deref() != Some(name.as_str()) {
                return error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "To delete the job, type its name exactly.",
                    nav,
                );
            }
            Command::DeleteJob
        }
        _ => return error_page(StatusCode::NOT_FOUND, "There is no such page.", nav),
    };
    match state
        .store
        .execute(&name, command, None, &meta(&session), |_, _| {
            (200, Value::Null)
        })
        .await
    {
        Ok(_) if action == "delete" => Redirect::to("/?done=deleted").into_response(),
        Ok(_) => Redirect::to(&format!("/jobs/{name}?done={action}")).into_response(),
        Err(e) => store_error_page(e, nav),
    }
}

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

async fn execution(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(run_id): Path<String>,
) -> Response {
    let nav = Nav::new(&session, None);
    let found = match state.log.find_one(doc! { "runId": &run_id }).await {
        Ok(found) => found,
        Err(e) => return store_error_page(e, nav),
    };
    let Some(r) = found else {
        return error_page(StatusCode::NOT_FOUND, "There is no such run.", nav);
    };
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
        worker: r.worker_id,
        fencing_token: r.fencing_token,
        command: r.command,
        output: r.output,
        output_bytes: r.output_bytes,
        truncated: r.truncated,
    };
    render(&ExecutionPage { nav, run })
}

struct WorkerView {
    id: String,
    host: String,
    version: String,
    started: String,
    slots: String,
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
}

async fn workers(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let nav = Nav::new(&session, None);
    let mut etcd = state.etcd.clone();
    let found = match etcd
        .get(state.keys.workers(), Some(GetOptions::new().with_prefix()))
        .await
    {
        Ok(found) => found,
        Err(e) => return store_error_page(e, nav),
    };
    let text = |v: &Value, key: &str| {
        v.get(key)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    let workers = found
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(kv.value()).ok())
        .map(|w| WorkerView {
            id: text(&w, "id"),
            host: text(&w, "hostname"),
            version: text(&w, "version"),
            started: text(&w, "startedAt"),
            slots: text(&w, "slots"),
            running: w["running"]
                .as_array()
                .map(|runs| {
                    runs.iter()
                        .filter_map(|r| r["jobName"].as_str().map(str::to_owned))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            heartbeat: text(&w, "heartbeatAt"),
            holds: w["holds"]
                .as_array()
                .map(|holds| {
                    holds
                        .iter()
                        .filter_map(|h| h.as_str().map(|h| h.replace('_', " ")))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    render(&WorkersPage { nav, workers })
}

#[derive(Debug, Default, Deserialize)]
struct AuditFilter {
    #[serde(default)]
    job: String,
    #[serde(default)]
    actor: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    filter: AuditFilter,
    events: Vec<ChangeView>,
    error: Option<String>,
    next_page: Option<String>,
}

async fn audit(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(filter): Query<AuditFilter>,
) -> Response {
    let nav = Nav::new(&session, None);
    let time = |text: &str| -> Result<Option<chrono::DateTime<Utc>>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("{text:?} is not an RFC 3339 time such as 2026-11-25T00:00:00Z"))
    };
    let (since, until) = match (time(&filter.since), time(&filter.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            return render(&AuditPage {
                nav,
                filter,
                events: Vec::new(),
                error: Some(e),
                next_page: None,
            })
        }
    };
    let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    let query = EventFilter {
        job: some(&filter.job),
        actor: some(&filter.actor),
        kind: some(&filter.kind),
        since,
        until,
        before_seq: filter.before,
        limit: PAGE_SIZE + 1,
    };
    let mut rows = match state.store.events(&query).await {
        Ok(rows) => rows,
        Err(e) => return store_error_page(e, nav),
    };
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let events: Vec<ChangeView> = rows.into_iter().map(change_view).collect();
    let next_page = more.then(|| {
        let before = events.last().map(|e| e.seq.to_string()).unwrap_or_default();
        let pairs = [
            ("job", filter.job.as_str()),
            ("actor", &filter.actor),
            ("type", &filter.kind),
            ("since", &filter.since),
            ("until", &filter.until),
            ("before", &before),
        ];
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    });
    render(&AuditPage {
        nav,
        filter,
        events,
        error: None,
        next_page,
    })
}

struct TokenRow {
    id: String,
    user: String,
    name: String,
    created: String,
    expires: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Nav,
    tokens: Vec<TokenRow>,
    created: Option<String>,
    error: Option<String>,
}

async fn tokens_page(
    state: &AppState,
    nav: Nav,
    created: Option<String>,
    error: Option<String>,
) -> Response {
    let tokens = match state.store.tokens().await {
        Ok(tokens) => tokens,
        Err(e) => return store_error_page(e, nav),
    };
    let when = |t: Option<chrono::DateTime<Utc>>, none: &str| {
        t.map_or_else(|| none.to_owned(), views::when)
    };
    let tokens = tokens
        .into_iter()
        .map(|t| TokenRow {
            created: views::when(t.created_at),
            expires: when(t.expires_at, "never"),
            last_used: when(t.last_used_at, "never"),
            revoked: t.revoked_at.is_some(),
            id: t.id,
            user: t.user,
            name: t.name,
        })
        .collect();
    render(&TokensPage {
        nav,
        tokens,
        created,
        error,
    })
}

async fn tokens(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DoneQuery>,
) -> Response {
    tokens_page(
        &state,
        Nav::new(&session, query.done.as_deref()),
        None,
        None,
    )
    .await
}

#[derive(Deserialize)]
struct TokenForm {
    user: String,
    name: String,
    #[serde(default, rename = "expiresInDays")]
    expires_in_days: String,
}

async fn create_token(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    let nav = Nav::new(&session, None);
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return tokens_page(
            &state,
            nav,
            None,
            Some("The form could not be read.".into()),
        )
        .await;
    };
    let days = match form.expires_in_days.trim() {
        "" => None,
        text => match text.parse::<u32>() {
            Ok(days) => Some(days),
            Err(_) => {
                return tokens_page(
                    &state,
                    nav,
                    None,
                    Some("expiresInDays: must be a whole number of days".into()),
                )
                .await
            }
        },
    };
    match state
        .store
        .create_token(form.user.trim(), form.name.trim(), days, &meta(&session))
        .await
    {
        // Shown in the answer to this POST only: a token must never sit in a URL or a redirect.
        Ok((token, _)) => tokens_page(&state, nav, Some(token.plaintext), None).await,
        Err(e) => tokens_page(&state, nav, None, Some(e.to_string())).await,
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    match state.store.revoke_token(&id, &meta(&session)).await {
        Ok(()) => Redirect::to("/tokens?done=revoked").into_response(),
        Err(e) => store_error_page(e, Nav::new(&session, None)),
    }
}

/// Unknown pages.
pub async fn not_found(session: Option<Extension<Session>>) -> Response {
    let nav = session
        .map(|Extension(s)| Nav::new(&s, None))
        .unwrap_or_default();
    error_page(StatusCode::NOT_FOUND, "There is no such page.", nav)
}
