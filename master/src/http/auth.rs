//! Authentication and authorization for every route, and the security headers.
//!
//! Every route has an entry in [`ACCESS`]; a route without one answers 500 (fail closed), and a
//! test walks the table with each role. Credentials are an `Authorization: Bearer` API token.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::accounts::Principal;
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
    ("POST", "/api/v1/jobs", Access::At(Role::Admin)),
    ("GET", "/api/v1/jobs/{name}", Access::At(Role::Viewer)),
    ("PUT", "/api/v1/jobs/{name}", Access::At(Role::Admin)),
    ("DELETE", "/api/v1/jobs/{name}", Access::At(Role::Admin)),
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
    (
        "GET",
        "/api/v1/jobs/{name}/history",
        Access::At(Role::Viewer),
    ),
    ("GET", "/api/v1/events", Access::At(Role::Viewer)),
    ("GET", "/api/v1/workers", Access::At(Role::Viewer)),
    ("GET", "/api/v1/users", Access::At(Role::Admin)),
    ("POST", "/api/v1/users", Access::At(Role::Admin)),
    ("GET", "/api/v1/tokens", Access::At(Role::Admin)),
    ("POST", "/api/v1/tokens", Access::At(Role::Admin)),
    ("DELETE", "/api/v1/tokens/{id}", Access::At(Role::Admin)),
];

/// The rule for a routed request; unmatched requests (404s) need any signed-in user.
fn access(method: &Method, path: Option<&str>) -> Option<Access> {
    let Some(path) = path else {
        return Some(Access::At(Role::Viewer));
    };
    ACCESS
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, access)| *access)
}

/// Resolves the caller and checks the route's rule; the principal goes into the request's
/// extensions for handlers.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some(rule) = access(request.method(), path.as_deref()) else {
        tracing::error!(method = %request.method(), path = ?path, "route without an access rule");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
        .into_response();
    };
    let Access::At(required) = rule else {
        return next.run(request).await;
    };
    let principal = match bearer(&request) {
        None => None,
        Some(token) => match state.store.authenticate_token(token).await {
            Ok(found) => found,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let Some(principal) = principal else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in or send Authorization: Bearer <token>",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    if principal.role < required {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the {required} role; {} is {}",
                principal.user, principal.role
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Security headers on every response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    response
}

/// The principal the auth layer put on a request.
pub fn principal(extensions: &axum::http::Extensions) -> Option<&Principal> {
    extensions.get::<Principal>()
}
