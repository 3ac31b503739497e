//! Notification channels: the list (operators and admins: whoever writes jobs needs the
//! names) and, for admins, the form that creates one. Nothing shown carries a secret or a
//! header value.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde_json::Value;

use super::channel_form::{input_of, ChannelForm, FormErrors};
use super::{meta, show, DoneQuery};
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::views;
use crate::http::AppState;
use crate::notify::channel::ChannelInput;
use crate::notify::channel_store::ChannelView;

/// A channel's settings as the pages show them.
pub(super) struct ChannelShown {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) url: String,
    pub(super) header_names: Vec<String>,
    pub(super) recipients: Vec<String>,
    pub(super) secret_set: bool,
    pub(super) version: i64,
    pub(super) updated: String,
    pub(super) updated_by: String,
}

impl ChannelShown {
    pub(super) fn new(view: &ChannelView) -> Self {
        let strings = |key: &str| -> Vec<String> {
            let items = view.target[key].as_array().into_iter().flatten();
            items.filter_map(Value::as_str).map(str::to_owned).collect()
        };
        Self {
            name: view.name.clone(),
            kind: view.target["kind"].as_str().unwrap_or_default().to_owned(),
            url: view.target["url"].as_str().unwrap_or_default().to_owned(),
            header_names: strings("headers"),
            recipients: strings("recipients"),
            secret_set: view.secret_set,
            version: view.version,
            updated: views::when(view.updated_at),
            updated_by: view.updated_by.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "channels.html")]
struct ChannelsPage {
    nav: Nav,
    channels: Vec<ChannelShown>,
    /// The create form, as typed.
    form: ChannelForm,
    errors: FormErrors,
    editing: bool,
    /// The edited channel's header names (none: this is the create form).
    header_names: Vec<String>,
}

async fn list_page(
    state: &AppState,
    nav: Nav,
    form: ChannelForm,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, HttpError> {
    let channels = state.store.channels().await?;
    let mut response = show(&ChannelsPage {
        nav,
        channels: channels.iter().map(ChannelShown::new).collect(),
        form,
        errors,
        editing: false,
        header_names: Vec::new(),
    })?;
    *response.status_mut() = status;
    Ok(response)
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, HttpError> {
    let nav = Nav::new(&session, query.done.as_deref());
    list_page(
        &state,
        nav,
        ChannelForm::blank(),
        FormErrors::new(),
        StatusCode::OK,
    )
    .await
}

/// The inputs of a form the user can fix, from an error answer; a failure of the master is
/// not the form's and stays an error page.
pub(super) fn form_errors(error: HttpError) -> Result<(FormErrors, StatusCode), HttpError> {
    if error.status.is_server_error() {
        return Err(error);
    }
    let input = error.field.as_deref().map_or("form", input_of);
    Ok((FormErrors::from([(input, error.message)]), error.status))
}

pub(super) fn read_form(body: &[u8]) -> Result<ChannelForm, HttpError> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_form",
            "The form could not be read.",
        )
    })
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let form = read_form(&body)?;
    let input = form
        .json(None)
        .and_then(|value| ChannelInput::from_json(value, state.webhook_allow_link_local));
    let created = match input {
        Ok(input) => state
            .store
            .create_channel(input, &meta(&session, &id))
            .await
            .map_err(HttpError::from),
        Err(invalid) => Err(HttpError::invalid(invalid)),
    };
    match created {
        Ok(view) => Ok(Redirect::to(&format!(
            "/channels/{}?done=channel-created",
            views::path_segment(&view.name)
        ))
        .into_response()),
        Err(error) => {
            let (errors, status) = form_errors(error)?;
            list_page(&state, Nav::for_session(&session), form, errors, status).await
        }
    }
}
