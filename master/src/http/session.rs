//! The page session's cookie and the checks on a page form: same origin and the session's
//! CSRF token.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::HttpError;
use super::layout::Nav;
use crate::accounts::Session;

/// The cookie that carries a page session.
pub const SESSION_COOKIE: &str = "cronfleet_session";

/// The session id in a request's cookies, if any.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that opens a session for 12 hours.
pub fn open_cookie(id: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}"
    ))
    .ok()
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn expired_cookie() -> HeaderValue {
    HeaderValue::from_static("cronfleet_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A form post must carry the session's CSRF token in its `csrf` field.
pub async fn checked_csrf(request: Request, session: &Session) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "The form is too large.",
            )
            .page(&Nav::for_session(session))
        })?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let presented = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_bytes());
    let valid = presented.is_some_and(|token| bool::from(token.ct_eq(session.csrf.as_bytes())));
    if !valid {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "bad_csrf",
            "The form expired or did not come from this site; reload the page and try again.",
        )
        .page(&Nav::for_session(session)));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// A browser's `Origin` (or, without one, `Referer`) must name this host.
pub fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match origin {
        None => true,
        Some(origin) => origin
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
    }
}
