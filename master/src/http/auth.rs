//! Authentication and authorization for every route, and the security headers.
//!
//! Every route has an entry in [`ACCESS`] per method; a method without one answers 405 with
//! `Allow` (fail closed; HEAD follows GET), and a test walks the table with each role. Credentials are an `Authorization: Bearer` API token.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::error::HttpError;
use super::layout::Nav;
use super::session::{checked_csrf, same_origin, session_cookie};
use super::AppState;
use crate::accounts::{Principal, Session};
use crate::identity::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed.
    Public,
    /// A user with at least this role.
    At(Role),
}

/// Every route: method, path as routed, and who may call it.
pub const ACCESS: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/metrics", Access::At(Role::Viewer)),
    ("GET", "/api/v1/openapi.json", Access::At(Role::Viewer)),
    ("GET", "/api/v1/jobs", Access::At(Role::Viewer)),
    ("GET", "/api/v1/running", Access::At(Role::Viewer)),
    ("GET", "/api/v1/executions", Access::At(Role::Viewer)),
    (
        "GET",
        "/api/v1/executions/{runId}",
        Access::At(Role::Viewer),
    ),
    ("POST", "/api/v1/jobs", Access::At(Role::Admin)),
    ("GET", "/api/v1/jobs/{name}", Access::At(Role::Viewer)),
    ("PUT", "/api/v1/jobs/{name}", Access::At(Role::Admin)),
    ("DELETE", "/api/v1/jobs/{name}", Access::At(Role::Admin)),
    (
        "GET",
        "/api/v1/jobs/{name}/versions/{version}",
        Access::At(Role::Viewer),
    ),
    (
        "POST",
        "/api/v1/jobs/{name}/revert",
        Access::At(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/jobs/{name}/pause",
        Access::At(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/jobs/{name}/resume",
        Access::At(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/jobs/{name}/run",
        Access::At(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/jobs/{name}/kill",
        Access::At(Role::Operator),
    ),
    (
        "GET",
        "/api/v1/jobs/{name}/executions",
        Access::At(Role::Viewer),
    ),
    ("GET", "/api/v1/jobs/{name}/stats", Access::At(Role::Viewer)),
    (
        "GET",
        "/api/v1/jobs/{name}/history",
        Access::At(Role::Viewer),
    ),
    (
        "GET",
        "/api/v1/jobs/{name}/deliveries",
        Access::At(Role::Viewer),
    ),
    ("GET", "/api/v1/channels", Access::At(Role::Operator)),
    ("POST", "/api/v1/channels", Access::At(Role::Admin)),
    ("GET", "/api/v1/channels/{name}", Access::At(Role::Operator)),
    ("PUT", "/api/v1/channels/{name}", Access::At(Role::Admin)),
    ("DELETE", "/api/v1/channels/{name}", Access::At(Role::Admin)),
    (
        "GET",
        "/api/v1/channels/{name}/deliveries",
        Access::At(Role::Admin),
    ),
    ("GET", "/api/v1/events", Access::At(Role::Viewer)),
    ("GET", "/api/v1/workers", Access::At(Role::Viewer)),
    ("GET", "/api/v1/users", Access::At(Role::Admin)),
    ("POST", "/api/v1/users", Access::At(Role::Admin)),
    ("PATCH", "/api/v1/users/{name}", Access::At(Role::Admin)),
    ("GET", "/api/v1/tokens", Access::At(Role::Admin)),
    ("POST", "/api/v1/tokens", Access::At(Role::Admin)),
    ("DELETE", "/api/v1/tokens/{id}", Access::At(Role::Admin)),
    ("GET", "/static/style.css", Access::Public),
    ("GET", "/login", Access::Public),
    ("POST", "/login", Access::Public),
    ("POST", "/logout", Access::At(Role::Viewer)),
    ("GET", "/", Access::At(Role::Viewer)),
    ("GET", "/jobs/new", Access::At(Role::Admin)),
    ("POST", "/jobs/new", Access::At(Role::Admin)),
    ("GET", "/jobs/{name}", Access::At(Role::Viewer)),
    ("GET", "/jobs/{name}/edit", Access::At(Role::Admin)),
    ("GET", "/jobs/{name}/stats", Access::At(Role::Viewer)),
    (
        "GET",
        "/jobs/{name}/versions/{version}",
        Access::At(Role::Viewer),
    ),
    (
        "POST",
        "/jobs/{name}/versions/{version}/revert",
        Access::At(Role::Admin),
    ),
    ("POST", "/jobs/{name}/edit", Access::At(Role::Admin)),
    // pause, resume, run, kill (operator) and delete (admin, checked again by the handler)
    ("POST", "/jobs/{name}/{action}", Access::At(Role::Operator)),
    ("GET", "/executions/{run_id}", Access::At(Role::Viewer)),
    ("GET", "/running", Access::At(Role::Viewer)),
    ("GET", "/runs", Access::At(Role::Viewer)),
    ("GET", "/workers", Access::At(Role::Viewer)),
    ("GET", "/audit", Access::At(Role::Viewer)),
    ("GET", "/channels", Access::At(Role::Operator)),
    ("POST", "/channels", Access::At(Role::Admin)),
    ("GET", "/channels/{name}", Access::At(Role::Operator)),
    ("POST", "/channels/{name}/edit", Access::At(Role::Admin)),
    ("POST", "/channels/{name}/delete", Access::At(Role::Admin)),
    ("GET", "/users", Access::At(Role::Admin)),
    ("POST", "/users", Access::At(Role::Admin)),
    ("POST", "/users/{name}", Access::At(Role::Admin)),
    ("GET", "/tokens", Access::At(Role::Admin)),
    ("POST", "/tokens", Access::At(Role::Admin)),
    ("POST", "/tokens/{id}/revoke", Access::At(Role::Admin)),
];

/// Whether a path belongs to the admin pages (cookies, HTML errors, CSRF) rather than the API.
fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || matches!(path, "/healthz" | "/readyz" | "/metrics"))
}

/// The rule for a routed request (HEAD follows GET); unmatched requests (404s) need any
/// signed-in user. `None` when the route does not take the method.
fn access(method: &Method, path: Option<&str>) -> Option<Access> {
    let Some(path) = path else {
        return Some(Access::At(Role::Viewer));
    };
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ACCESS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, access)| *access)
}

/// 405 for a method a route does not take, with the methods it does in `Allow`.
fn method_not_allowed(method: &Method, path: &str) -> Response {
    let mut allowed: Vec<&str> = ACCESS
        .iter()
        .filter(|(_, p, _)| *p == path)
        .map(|(m, _, _)| *m)
        .collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    let allow = allowed.join(", ");
    let mut response = HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here; allowed: {allow}"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Resolves the caller and checks the route's rule; the principal (and for pages the session)
/// goes into the request's extensions for handlers. Page forms are checked for CSRF here.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let page = is_page(request.uri().path());
    let Some(rule) = access(request.method(), path.as_deref()) else {
        return method_not_allowed(request.method(), path.as_deref().unwrap_or_default());
    };
    if page && request.method() == Method::POST && !same_origin(&request) {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "This form came from another site.",
        )
        .page(&Nav::default());
    }
    let Access::At(required) = rule else {
        return next.run(request).await;
    };
    let (session, principal) = match caller(&state, request.headers(), page).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(principal) = principal else {
        return unauthenticated(page);
    };
    if principal.role < required {
        let message = format!(
            "This needs the {required} role; {} is {}.",
            principal.user, principal.role
        );
        let error = HttpError::new(StatusCode::FORBIDDEN, "forbidden", message);
        return match &session {
            Some(session) => error.page(&Nav::for_session(session)),
            None => error.into_response(),
        };
    }
    if let Some(session) = session {
        if request.method() == Method::POST {
            request = match checked_csrf(request, &session).await {
                Ok(request) => request,
                Err(response) => return response,
            };
        }
        request.extensions_mut().insert(session);
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// No credentials: a page goes to the sign-in form, the API answers 401.
fn unauthenticated(page: bool) -> Response {
    if page {
        return Redirect::to("/login").into_response();
    }
    let mut response = HttpError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "sign in or send Authorization: Bearer <token>",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Who sends the request: a page session (from its cookie) or, for the API, a bearer token.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    page: bool,
) -> Result<(Option<Session>, Option<Principal>), Response> {
    let session = match session_cookie(headers).filter(|_| page) {
        Some(id) => state
            .store
            .session(id)
            .await
            .map_err(|e| HttpError::from(e).page(&Nav::default()))?,
        None => None,
    };
    let principal = match (&session, bearer(headers)) {
        (Some(session), _) => Some(session.principal.clone()),
        (None, Some(token)) if !page => state
            .store
            .authenticate_token(token)
            .await
            .map_err(|e| HttpError::from(e).into_response())?,
        _ => None,
    };
    Ok((session, principal))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Security headers on every response; `Cache-Control: no-store` on every one but static
/// assets, since pages and answers carry run output, tokens and other secrets.
pub async fn headers(request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    response
}

/// The principal the auth layer put on a request.
pub fn principal(extensions: &axum::http::Extensions) -> Option<&Principal> {
    extensions.get::<Principal>()
}
