//! API tokens: list, create (shown once), revoke.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use serde::Deserialize;

use super::show;
use super::{meta, DoneQuery};
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::telemetry::RequestId;
use crate::http::views;
use crate::http::AppState;

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
) -> Result<Response, HttpError> {
    let tokens = state.store.tokens().await?;
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
    show(&TokensPage {
        nav,
        tokens,
        created,
        error,
    })
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, HttpError> {
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

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let nav = Nav::for_session(&session);
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
        .create_token(
            form.user.trim(),
            form.name.trim(),
            days,
            &meta(&session, &id),
        )
        .await
    {
        // Shown in the answer to this POST only: a token must never sit in a URL or a redirect.
        Ok((token, _)) => tokens_page(&state, nav, Some(token.plaintext), None).await,
        // What the user can fix is shown beside the form; a failure of the master is not.
        Err(e) => {
            let error = HttpError::from(e);
            if error.status.is_server_error() {
                return Err(error);
            }
            tokens_page(&state, nav, None, Some(error.message)).await
        }
    }
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(request): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    state
        .store
        .revoke_token(&id, &meta(&session, &request))
        .await?;
    Ok(Redirect::to("/tokens?done=revoked").into_response())
}
