//! Signing in and out.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::show;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::session::{expired_cookie, open_cookie, session_cookie};
use crate::http::AppState;
use crate::identity::{check_user_name, verify_decoy};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    name: String,
    error: Option<String>,
}

pub(super) async fn form() -> Result<Response, HttpError> {
    show(&LoginPage {
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

/// The sign-in form again, with why it was refused.
fn refused(name: String, message: &str, status: StatusCode) -> Result<Response, HttpError> {
    let page = LoginPage {
        nav: Nav::default(),
        name,
        error: Some(message.to_owned()),
    };
    let mut response = show(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

pub(super) async fn login(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let form = serde_urlencoded::from_bytes::<LoginForm>(&body).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_form",
            "the sign-in form was incomplete",
        )
    })?;
    // A name no user can have is refused like a wrong password, after the same hash work,
    // and is neither looked up nor remembered by the throttle.
    if check_user_name(&form.name).is_err() {
        verify_decoy(&form.password);
        return refused(
            String::new(),
            "Wrong user name or password.",
            StatusCode::UNAUTHORIZED,
        );
    }
    if state.throttle.blocked(&form.name) {
        return refused(
            form.name,
            "Too many failed sign-ins for this user; try again in 15 minutes.",
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let Some(principal) = state
        .store
        .check_password(&form.name, &form.password)
        .await?
    else {
        state.throttle.failed(&form.name);
        return refused(
            form.name,
            "Wrong user name or password.",
            StatusCode::UNAUTHORIZED,
        );
    };
    state.throttle.succeeded(&form.name);
    let id = state.store.open_session(&principal).await?;
    let mut response = Redirect::to("/").into_response();
    if let Some(cookie) = open_cookie(&id, state.secure_cookies) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if let Some(id) = session_cookie(&headers) {
        state.store.close_session(id).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, expired_cookie());
    Ok(response)
}
