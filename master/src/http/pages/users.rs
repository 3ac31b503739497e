//! Users (admins only): list, create, change role, disable or enable, reset a password. Every
//! change is in the audit log; what a change cannot do (the last admin, a short password) is
//! shown beside the forms.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;

use super::{meta, show, DoneQuery};
use crate::accounts::{AccountError, Session, UserChange};
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::views;
use crate::http::AppState;
use crate::identity::Role;

struct UserRow {
    name: String,
    role: &'static str,
    disabled: bool,
    created: String,
    created_by: String,
    /// The signed-in admin's own row: no disable button.
    me: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    error: Option<String>,
}

async fn users_page(
    state: &AppState,
    session: &Session,
    nav: Nav,
    error: Option<String>,
) -> Result<Response, HttpError> {
    let users = state
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            me: u.name == session.principal.user,
            role: u.role.as_str(),
            disabled: u.disabled,
            created: views::when(u.created_at),
            created_by: u.created_by,
            name: u.name,
        })
        .collect();
    show(&UsersPage { nav, users, error })
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, HttpError> {
    let nav = Nav::new(&session, query.done.as_deref());
    users_page(&state, &session, nav, None).await
}

/// Shows what the admin can fix beside the forms; a failure of the master is an error page.
async fn refused(
    state: &AppState,
    session: &Session,
    error: AccountError,
) -> Result<Response, HttpError> {
    let error = HttpError::from(error);
    if error.status.is_server_error() {
        return Err(error);
    }
    users_page(
        state,
        session,
        Nav::for_session(session),
        Some(error.message),
    )
    .await
}

#[derive(Deserialize)]
struct NewUserForm {
    name: String,
    role: String,
    password: String,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let Ok(form) = serde_urlencoded::from_bytes::<NewUserForm>(&body) else {
        let error = AccountError::Invalid(cronfleet_common::FieldError::new(
            "form",
            "could not be read",
        ));
        return refused(&state, &session, error).await;
    };
    let role = match Role::parse(&form.role) {
        Ok(role) => role,
        Err(e) => return refused(&state, &session, e.into()).await,
    };
    let meta = meta(&session, &id);
    match state
        .store
        .create_user(form.name.trim(), role, &form.password, &meta)
        .await
    {
        Ok(user) => Ok(done(&format!("User {} created", user.name))),
        Err(e) => refused(&state, &session, e).await,
    }
}

/// One change from the list: `action` is `role` (with `role`), `disable`, `enable` or
/// `password` (with `password`).
#[derive(Deserialize)]
struct ChangeForm {
    action: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn change(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let form = serde_urlencoded::from_bytes::<ChangeForm>(&body).ok();
    let change = match form.as_ref().map(|f| (f.action.as_str(), f)) {
        Some(("role", f)) => match Role::parse(&f.role) {
            Ok(role) => UserChange {
                role: Some(role),
                ..UserChange::default()
            },
            Err(e) => return refused(&state, &session, e.into()).await,
        },
        Some(("disable", _)) if name == session.principal.user => {
            let error = cronfleet_common::FieldError::new("user", "you cannot disable yourself");
            return refused(&state, &session, error.into()).await;
        }
        Some(("disable" | "enable", f)) => UserChange {
            disabled: Some(f.action == "disable"),
            ..UserChange::default()
        },
        Some(("password", f)) => UserChange {
            password: Some(f.password.clone()),
            ..UserChange::default()
        },
        _ => {
            let error =
                cronfleet_common::FieldError::new("action", "is not a change this page makes");
            return refused(&state, &session, error.into()).await;
        }
    };
    match state
        .store
        .change_user(&name, &change, &meta(&session, &id))
        .await
    {
        Ok(user) => Ok(done(&format!("User {} changed", user.name))),
        Err(e) => refused(&state, &session, e).await,
    }
}

fn done(message: &str) -> Response {
    let query = serde_urlencoded::to_string([("done", message)]).unwrap_or_default();
    Redirect::to(&format!("/users?{query}")).into_response()
}
