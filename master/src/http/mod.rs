//! The master's HTTP surface: the REST API under `/api/v1`, its OpenAPI document, health,
//! readiness and metrics.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod error;
pub mod fail_fast;
pub mod input;
pub mod pages;
pub mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cronfleet_common::{ExecutionRecord, Keys};
use mongodb::bson::doc;
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::Store;
use error::ApiError;

/// Largest request body accepted, in bytes (a job's command is at most 64 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub etcd: etcd_client::Client,
    pub keys: Keys,
    pub log: mongodb::Collection<ExecutionRecord>,
    pub metrics: Arc<Metrics>,
    pub throttle: Arc<LoginThrottle>,
    /// Whether PostgreSQL and etcd answer, as the health watcher last saw.
    pub health: Arc<Health>,
    /// Mark the session cookie `Secure` (the master is served over TLS, e.g. behind a proxy).
    pub secure_cookies: bool,
}

/// Counts failed sign-ins per user name; five within 15 minutes block that name for the rest
/// of the window (on this master). Only well-formed names (64 bytes at most) are counted, and
/// at most [`THROTTLE_NAMES`] of them: when the table is full, the name counted longest ago
/// makes room.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, Instant)>>,
}

const THROTTLE_FAILURES: u32 = 5;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most user names the throttle remembers at once (a few hundred bytes each).
pub const THROTTLE_NAMES: usize = 10_000;

impl LoginThrottle {
    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, Instant)>> {
        // Each critical section is one map update; a poisoned lock still holds consistent data.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn blocked(&self, user: &str) -> bool {
        let mut table = self.table();
        table.retain(|_, (_, first)| first.elapsed() < THROTTLE_WINDOW);
        table
            .get(&user.to_lowercase())
            .is_some_and(|(count, _)| *count >= THROTTLE_FAILURES)
    }

    pub fn failed(&self, user: &str) {
        let mut table = self.table();
        let user = user.to_lowercase();
        if !table.contains_key(&user) && table.len() >= THROTTLE_NAMES {
            table.retain(|_, (_, first)| first.elapsed() < THROTTLE_WINDOW);
            if table.len() >= THROTTLE_NAMES {
                let oldest = table
                    .iter()
                    .min_by_key(|(_, (_, first))| *first)
                    .map(|(name, _)| name.clone());
                if let Some(oldest) = oldest {
                    table.remove(&oldest);
                }
            }
        }
        table.entry(user).or_insert((0, Instant::now())).0 += 1;
    }

    pub fn succeeded(&self, user: &str) {
        self.table().remove(&user.to_lowercase());
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "cronfleet", description = "Distributed crontab: jobs, executions, audit log, workers."),
    servers((url = "/api/v1")),
    tags((name = "jobs"), (name = "executions"), (name = "audit"), (name = "workers"), (name = "access")),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the `Authorization: Bearer` scheme every route but health and readiness needs.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole router: `/api/v1/...`, `/api/v1/openapi.json`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::router())
        .merge(accounts::router())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let api = api
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::not_found("no such API route") });
    Router::new()
        .merge(pages::router())
        .fallback(pages::not_found)
        .nest("/api/v1", api)
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn(input::refuse_bad_input))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            fail_fast::fail_fast,
        ))
        .layer(middleware::from_fn(auth::headers))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Who is asking (from the authenticated principal), and what.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: String,
    pub request_id: String,
    pub idempotency_key: Option<String>,
    /// Whose idempotency keys these are: the user and the token (or session) they came with.
    pub caller: String,
    pub method: Method,
    pub uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let principal = auth::principal(&parts.extensions).ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first")
        })?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let idempotency_key = header("idempotency-key").map(str::to_owned);
        if idempotency_key.as_ref().is_some_and(|k| k.len() > 255) {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "Idempotency-Key",
                "Idempotency-Key: at most 255 characters",
            ));
        }
        let request_id = header("x-request-id")
            .filter(|id| id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        let caller = match &principal.token {
            Some((id, _)) => format!("{}/token:{id}", principal.user),
            None => format!("{}/session", principal.user),
        };
        Ok(Self {
            actor: principal.actor(),
            request_id,
            idempotency_key,
            caller,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
        })
    }
}

/// `Query` whose rejection is a JSON error naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .split_once("query string: ")
                    .map_or(text.as_str(), |(_, d)| d)
                    .to_owned();
                let field = detail
                    .split_once(':')
                    .map(|(f, _)| f.trim().to_owned())
                    .filter(|f| !f.contains(' '));
                Err(ApiError {
                    field,
                    ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", detail)
                })
            }
        }
    }
}

/// The request body; one over [`MAX_BODY_BYTES`] is a JSON 413.
#[derive(Debug)]
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_body", rejection.body_text())
                }
            })
    }
}

/// Counts requests by route and status and times them.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
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

/// Readiness: PostgreSQL and etcd as the health watcher last saw them (the same state that
/// answers other requests 503 at once), and MongoDB answering within a second.
async fn readyz(State(state): State<AppState>) -> Response {
    let limit = Duration::from_secs(1);
    let [(_, postgres), (_, etcd)] = fail_fast::checks(&state.health);
    let mongo = tokio::time::timeout(
        limit,
        state
            .log
            .client()
            .database("admin")
            .run_command(doc! { "ping": 1 }),
    )
    .await;
    let verdict = |ok: bool| if ok { "ok" } else { "unavailable" };
    let checks = json!({
        "postgres": verdict(postgres),
        "etcd": verdict(etcd),
        "mongo": verdict(matches!(mongo, Ok(Ok(_)))),
    });
    let ready = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v == "ok"));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(json!({ "ready": ready, "checks": checks }))).into_response();
    if !ready {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    let lag = state.metrics.projector_lag(&state).await;
    let body = state.metrics.render(lag);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_blocks_a_name_and_stays_bounded_by_dropping_the_oldest() {
        let throttle = LoginThrottle::default();
        for _ in 0..THROTTLE_FAILURES {
            throttle.failed("Victim");
        }
        assert!(throttle.blocked("victim"));
        for i in 0..THROTTLE_NAMES {
            throttle.failed(&format!("flood-{i}"));
        }
        assert!(
            !throttle.blocked("victim"),
            "a full table makes room by forgetting the name counted longest ago"
        );
        assert!(throttle.table().len() <= THROTTLE_NAMES);
    }
}
