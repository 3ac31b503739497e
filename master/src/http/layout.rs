//! The admin pages' layout: who is signed in, the flash message after a redirect, and a
//! template (or an error) rendered inside it.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::accounts::Session;
use crate::identity::Role;

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

    /// The layout for a signed-in session, with the message for a `?done=` code.
    pub fn new(session: &Session, done: Option<&str>) -> Self {
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
        "reverted" => "Job reverted: the past version's spec is saved as a new version.",
        "pause" => "Job paused.",
        "resume" => "Job resumed.",
        "run" => "Run requested: a worker starts it within a second.",
        "kill" => "Kill requested: running runs get SIGTERM now.",
        "revoked" => "Token revoked.",
        "channel-created" => "Channel created.",
        "channel-updated" => "Channel saved.",
        "channel-deleted" => "Channel deleted.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// A page. A template that cannot render is an internal error of the HTTP layer (logged,
/// never shown).
pub fn render(template: &impl Template) -> Result<Response, askama::Error> {
    template.render().map(|html| Html(html).into_response())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: &'a Nav,
    status: String,
    message: &'a str,
}

/// An error's message as a page in the layout.
pub fn error_html(status: StatusCode, message: &str, nav: &Nav) -> String {
    let page = ErrorPage {
        nav,
        status: status.to_string(),
        message,
    };
    page.render().unwrap_or_else(|_| message.to_owned())
}
