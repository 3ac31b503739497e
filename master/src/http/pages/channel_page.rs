//! One channel's page: its settings (header names only, and whether a secret is set), the
//! jobs that notify it, and for admins its edit and delete forms and its delivery log (the
//! API gives that log to admins only, too).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use cronfleet_common::ChannelName;
use serde::Deserialize;

use super::channel_form::{ChannelForm, FormErrors};
use super::channels::{form_errors, read_form, ChannelShown};
use super::deliveries::{DeliveryRow, RECENT_DELIVERIES};
use super::{meta, show, DoneQuery};
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::views;
use crate::http::AppState;
use crate::notify::channel::ChannelInput;
use crate::notify::channel_store::ChannelError;
use crate::notify::delivery_log::DeliveryFilter;

#[derive(Template)]
#[template(path = "channel.html")]
struct ChannelPage {
    nav: Nav,
    channel: ChannelShown,
    /// The live jobs whose notify rules name the channel.
    used_by: Vec<String>,
    /// The delivery log, for admins.
    deliveries: Vec<DeliveryRow>,
    /// The edit form, as stored or as typed.
    form: ChannelForm,
    errors: FormErrors,
    editing: bool,
    header_names: Vec<String>,
    delete_error: Option<String>,
}

/// What the page shows besides the channel: the edit form as typed and the errors.
struct Shown {
    form: Option<ChannelForm>,
    errors: FormErrors,
    delete_error: Option<String>,
    status: StatusCode,
}

impl Shown {
    fn clean() -> Self {
        Self {
            form: None,
            errors: FormErrors::new(),
            delete_error: None,
            status: StatusCode::OK,
        }
    }
}

fn parse_channel(raw: &str) -> Result<ChannelName, HttpError> {
    ChannelName::parse(raw, "name").map_err(|_| HttpError::not_found("There is no such channel."))
}

fn no_such_channel(error: ChannelError) -> HttpError {
    match error {
        ChannelError::NotFound(_) => HttpError::not_found("There is no such channel."),
        other => other.into(),
    }
}

async fn channel_page(
    state: &AppState,
    nav: Nav,
    name: &ChannelName,
    shown: Shown,
) -> Result<Response, HttpError> {
    let view = state
        .store
        .channel_view(name)
        .await
        .map_err(no_such_channel)?;
    let used_by = state.store.jobs_notifying(name).await?;
    let deliveries = if nav.admin {
        let filter = DeliveryFilter::Channel(name.clone());
        let log = state.store.deliveries(&filter, RECENT_DELIVERIES).await?;
        log.into_iter().map(DeliveryRow::new).collect()
    } else {
        Vec::new()
    };
    let channel = ChannelShown::new(&view);
    let mut response = show(&ChannelPage {
        header_names: channel.header_names.clone(),
        form: shown.form.unwrap_or_else(|| ChannelForm::from_view(&view)),
        errors: shown.errors,
        editing: true,
        delete_error: shown.delete_error,
        nav,
        channel,
        used_by,
        deliveries,
    })?;
    *response.status_mut() = shown.status;
    Ok(response)
}

pub(super) async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, HttpError> {
    let nav = Nav::new(&session, query.done.as_deref());
    let name = parse_channel(&name)?;
    channel_page(&state, nav, &name, Shown::clean()).await
}

pub(super) async fn update(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let name = parse_channel(&name)?;
    let mut form = read_form(&body)?;
    form.name = name.to_string();
    let current = state.store.channel(name.as_str()).await?;
    let Some(current) = current else {
        return Err(HttpError::not_found("There is no such channel."));
    };
    let input = form
        .json(Some(&current.target))
        .and_then(|value| ChannelInput::from_json(value, state.webhook_allow_link_local));
    let updated = match input {
        Ok(input) => state
            .store
            .update_channel(input, &meta(&session, &id))
            .await
            .map_err(HttpError::from),
        Err(invalid) => Err(HttpError::invalid(invalid)),
    };
    if let Err(error) = updated {
        let (errors, status) = form_errors(error)?;
        let shown = Shown {
            form: Some(form),
            errors,
            delete_error: None,
            status,
        };
        return channel_page(&state, Nav::for_session(&session), &name, shown).await;
    }
    let to = format!(
        "/channels/{}?done=channel-updated",
        views::path_segment(name.as_str())
    );
    Ok(Redirect::to(&to).into_response())
}

#[derive(Deserialize)]
struct ConfirmForm {
    confirm: Option<String>,
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let name = parse_channel(&name)?;
    let confirmed = serde_urlencoded::from_bytes::<ConfirmForm>(&body)
        .ok()
        .and_then(|form| form.confirm);
    let refused = if confirmed.as_deref() != Some(name.as_str()) {
        (
            "To delete the channel, type its name exactly.".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    } else {
        match state
            .store
            .delete_channel(&name, &meta(&session, &id))
            .await
        {
            Ok(()) => return Ok(Redirect::to("/channels?done=channel-deleted").into_response()),
            Err(error @ ChannelError::InUse { .. }) => (error.to_string(), StatusCode::CONFLICT),
            Err(other) => return Err(no_such_channel(other)),
        }
    };
    let (delete_error, status) = refused;
    let shown = Shown {
        delete_error: Some(delete_error),
        status,
        ..Shown::clean()
    };
    channel_page(&state, Nav::for_session(&session), &name, shown).await
}
