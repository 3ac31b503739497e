//! What every request gets besides its answer: a request id (the caller's `X-Request-Id` when
//! it is sane, else a new one; echoed in the answer and recorded on the events it appends), a
//! tracing span with the matched route and that id, a timeout, and its metrics.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::AppState;

/// The longest a request may take before it is answered 503: well above the dependencies'
/// own timeouts, so it only cuts off what would otherwise hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id: the caller's when it is at most 128 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives the request its id (in its headers and extensions) and echoes it in the answer.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let value = HeaderValue::from_str(&id).ok();
    if let Some(value) = &value {
        request.headers_mut().insert(REQUEST_ID, value.clone());
    }
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.run(request).await;
    if let Some(value) = value {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A span per request: method, matched route, path and request id; its answer's status and
/// latency are logged when it ends (failures, 5xx, at error level).
pub fn trace() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    impl Fn(&Request<Body>) -> tracing::Span + Clone,
> {
    TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let id = request
            .extensions()
            .get::<RequestId>()
            .map_or("", |id| id.0.as_str());
        tracing::info_span!(
            "request",
            http.method = %request.method(),
            http.route = route,
            http.path = request.uri().path(),
            request.id = id,
        )
    })
}

/// 503 for a request still unanswered after [`REQUEST_TIMEOUT`].
pub fn timeout() -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT)
}

/// Counts requests by route and status and times them.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request(&method, &route, response.status(), started.elapsed());
    response
}
