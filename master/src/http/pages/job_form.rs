//! The job form: new, edit, preview and save, through the same validation as the API. A
//! refused form comes back as typed, with every error beside its field (see [`form_check`]).
//!
//! [`form_check`]: super::form_check

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use cronfleet_common::JobSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::job_outcomes::{OutcomeErrors, OutcomesForm};
use super::job_policy::{FormError, PolicyForm};
use super::{form_check, show};
use super::{meta, no_such_job, parse_name};
use crate::accounts::Session;
use crate::domain::{Command, DomainError};
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::views;
use crate::http::AppState;
use crate::store::StoreError;

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
    shell: String,
    #[serde(default)]
    description: String,
    /// `NAME=value` lines.
    #[serde(default)]
    env: String,
    #[serde(default, rename = "retentionDays")]
    retention_days: String,
    #[serde(default, rename = "retentionMaxRecords")]
    retention_max_records: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    intent: String,
    #[serde(flatten)]
    policy: PolicyForm,
    #[serde(flatten)]
    outcomes: OutcomesForm,
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
            shell: spec.shell.clone().unwrap_or_default(),
            description: spec.description.clone(),
            env: spec
                .env
                .iter()
                .map(|(name, value)| format!("{name}={value}\n"))
                .collect(),
            retention_days: spec
                .retention
                .days
                .map(|d| d.to_string())
                .unwrap_or_default(),
            retention_max_records: spec
                .retention
                .max_records
                .map(|n| n.to_string())
                .unwrap_or_default(),
            version: version.to_string(),
            intent: String::new(),
            policy: PolicyForm::from_spec(spec),
            outcomes: OutcomesForm::from_spec(spec),
        }
    }

    /// The spec, through the same validation as the API, or every error by field.
    fn spec(&self, paused: bool) -> Result<JobSpec, HashMap<String, String>> {
        let mut errors: Vec<FormError> = Vec::new();
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
            match whole_number(text, field, "a whole number of seconds") {
                Ok(Some(secs)) => {
                    body.insert(field.into(), json!(secs));
                }
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        if !self.concurrency.is_empty() {
            body.insert("concurrency".into(), json!(self.concurrency));
        }
        if !self.shell.trim().is_empty() {
            body.insert("shell".into(), json!(self.shell.trim()));
        }
        body.insert("description".into(), json!(self.description));
        let (env, env_errors) = env_lines(&self.env);
        errors.extend(env_errors);
        body.insert("env".into(), Value::Object(env));
        body.insert("paused".into(), json!(paused));
        let mut retention = Map::new();
        for (name, text) in [
            ("days", &self.retention_days),
            ("maxRecords", &self.retention_max_records),
        ] {
            match whole_number(text, &format!("retention.{name}"), "a whole number") {
                Ok(Some(n)) => {
                    retention.insert(name.into(), json!(n));
                }
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        if !retention.is_empty() {
            body.insert("retention".into(), Value::Object(retention));
        }
        errors.extend(self.policy.fill(&mut body).err());
        errors.extend(self.outcomes.fill(&mut body).err());
        form_check::checked(body, errors)
    }
}

/// A number input: empty is `None`; anything but a whole number is an error for `field`.
fn whole_number(text: &str, field: &str, what: &str) -> Result<Option<u64>, FormError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| (field.to_owned(), format!("{field}: must be {what}")))
}

/// `NAME=value` lines as an object, and an error for each line that is not one.
fn env_lines(text: &str) -> (Map<String, Value>, Vec<FormError>) {
    let mut env = Map::new();
    let mut errors = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((name, value)) => {
                env.insert(name.trim().to_owned(), json!(value));
            }
            None => errors.push(("env".into(), format!("env: {line:?} is not NAME=value"))),
        }
    }
    (env, errors)
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
    /// An error about the selector or one of its keys (`selector`, `selector.KEY`).
    selector_error: Option<String>,
    /// Errors about the notify rules and the chains, by input.
    outcome_errors: OutcomeErrors,
    /// The channels a rule may name.
    channels: Vec<String>,
    /// The fleet's retention, in words, for what an empty field means.
    default_retention: String,
    preview: Vec<String>,
    conflict: Option<String>,
}

/// The form page: a new or an edited job's form, as typed, with its errors.
struct Again {
    nav: Nav,
    editing: bool,
    /// The channels a notify rule may name, for the help text.
    channels: Vec<String>,
    default_retention: String,
}

impl Again {
    async fn new(state: &AppState, session: &Session, editing: bool) -> Result<Self, HttpError> {
        let channels = state.store.channels().await?;
        Ok(Self {
            nav: Nav::for_session(session),
            editing,
            channels: channels.into_iter().map(|c| c.name).collect(),
            default_retention: state.retention.describe(),
        })
    }

    fn page(
        &self,
        form: JobForm,
        errors: HashMap<String, String>,
        preview: Vec<String>,
        conflict: Option<String>,
    ) -> JobFormPage {
        let error_under = |prefix: &str| {
            errors
                .iter()
                .find(|(field, _)| field.starts_with(prefix))
                .map(|(_, e)| e.clone())
        };
        JobFormPage {
            nav: self.nav.clone(),
            form,
            editing: self.editing,
            env_error: error_under("env"),
            selector_error: error_under("selector"),
            outcome_errors: OutcomeErrors::new(&errors),
            errors,
            channels: self.channels.clone(),
            default_retention: self.default_retention.clone(),
            preview,
            conflict,
        }
    }

    fn show(
        &self,
        form: JobForm,
        errors: HashMap<String, String>,
        conflict: Option<String>,
        status: StatusCode,
    ) -> Result<Response, HttpError> {
        let mut response = show(&self.page(form, errors, Vec::new(), conflict))?;
        *response.status_mut() = status;
        Ok(response)
    }

    /// With the next five fire times of the schedule as typed.
    fn preview(&self, form: JobForm, spec: &JobSpec) -> Result<Response, HttpError> {
        let preview = spec
            .schedule()
            .upcoming(Utc::now(), 5)
            .into_iter()
            .map(|t| views::when_in(t, spec.timezone))
            .collect();
        show(&self.page(form, HashMap::new(), preview, None))
    }

    /// With why the store refused it, when the user can act on that.
    fn refused(&self, form: JobForm, error: StoreError) -> Result<Response, HttpError> {
        let (field, message, status) = match error {
            StoreError::Domain(DomainError::VersionConflict { current, .. }) => {
                let message = format!(
                    "Someone changed this job while you were editing it (it is now at version {current}). Reload it to see their change; your edits are below."
                );
                return self.show(form, HashMap::new(), Some(message), StatusCode::CONFLICT);
            }
            StoreError::Domain(DomainError::AlreadyExists(_)) => (
                "name".to_owned(),
                "name: a job with this name already exists".to_owned(),
                StatusCode::CONFLICT,
            ),
            // An unknown channel or chain target, or a chain that would close a cycle.
            StoreError::Domain(DomainError::Link { field, reason }) => (
                field.clone(),
                format!("{field}: {reason}"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            other => return Err(other.into()),
        };
        self.show(form, HashMap::from([(field, message)]), None, status)
    }
}

pub(super) async fn new(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, HttpError> {
    let form = JobForm {
        timezone: "UTC".into(),
        concurrency: "forbid".into(),
        version: "0".into(),
        policy: PolicyForm {
            mode: "one".into(),
            ..PolicyForm::default()
        },
        ..JobForm::default()
    };
    let again = Again::new(&state, &session, false).await?;
    again.show(form, HashMap::new(), None, StatusCode::OK)
}

pub(super) async fn edit(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let name = parse_name(&name)?;
    let row = state.store.job(&name).await?.ok_or_else(no_such_job)?;
    let form = JobForm::from_spec(&row.spec, row.version);
    let again = Again::new(&state, &session, true).await?;
    again.show(form, HashMap::new(), None, StatusCode::OK)
}

pub(super) async fn create(
    state: State<AppState>,
    session: Extension<Session>,
    id: Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    save_job(state, session, id, None, body).await
}

pub(super) async fn update(
    state: State<AppState>,
    session: Extension<Session>,
    id: Extension<RequestId>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    save_job(state, session, id, Some(name), body).await
}

async fn save_job(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    editing: Option<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let mut form = serde_urlencoded::from_bytes::<JobForm>(&body).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_form",
            "The form could not be read.",
        )
    })?;
    if let Some(name) = &editing {
        form.name.clone_from(name);
    }
    let again = Again::new(&state, &session, editing.is_some()).await?;
    let spec = match form.spec(false) {
        Ok(spec) => spec,
        Err(errors) => {
            return again.show(form, errors, None, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    if form.intent == "preview" {
        return again.preview(form, &spec);
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
        .execute(&name, command, expected, &meta(&session, &id))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/jobs/{}?done={done}",
            views::path_segment(name.as_str())
        ))
        .into_response()),
        Err(e) => again.refused(form, e),
    }
}
