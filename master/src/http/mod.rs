//! The master's HTTP surface: the REST API under `/api/v1` ([`api`], one module per resource)
//! and its OpenAPI document, the admin pages ([`pages`], the same), health, readiness and
//! metrics ([`probes`]).
//!
//! Both worlds share one error ([`error::HttpError`]: JSON for the API, a page in the
//! [`layout`] for the admin pages), one read side ([`crate::read`]), and one stack of layers:
//! the access table ([`auth`], fail-closed), input checks
//! ([`input`]) and fail-fast while a dependency is down ([`fail_fast`]); every request has a
//! request id, a tracing span, a timeout and its metrics ([`telemetry`]).

pub mod api;
pub mod auth;
pub mod charts;
pub mod error;
pub mod extract;
pub mod fail_fast;
pub mod filters;
pub mod input;
pub mod layout;
pub mod pages;
pub mod probes;
pub mod session;
pub mod telemetry;
pub mod throttle;
pub mod views;

pub use extract::{ApiBody, ApiQuery, RequestContext};
pub use throttle::LoginThrottle;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::read::Reads;
use crate::store::Store;
use error::HttpError;

/// Largest request body accepted, in bytes (a job's command is at most 64 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// What the API and the pages read besides the jobs.
    pub reads: Reads,
    pub metrics: Arc<Metrics>,
    pub throttle: Arc<LoginThrottle>,
    /// Whether PostgreSQL and etcd answer, as the health watcher last saw.
    pub health: Arc<Health>,
    /// Mark the session cookie `Secure` (the master is served over TLS, e.g. behind a proxy).
    pub secure_cookies: bool,
    /// Webhook channels may point at link-local and metadata addresses.
    pub webhook_allow_link_local: bool,
    /// How long records are kept where a job does not say.
    pub retention: cronfleet_common::Retention,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "cronfleet", description = "Distributed crontab: jobs, executions, notification channels, audit log, workers."),
    servers((url = "/api/v1")),
    tags((name = "jobs"), (name = "executions"), (name = "channels"), (name = "audit"), (name = "workers"), (name = "access")),
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
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let api = api
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .fallback(|| async { HttpError::not_found("no such API route") });
    Router::new()
        .merge(pages::router())
        .fallback(pages::not_found)
        .nest("/api/v1", api)
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
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
        .layer(telemetry::timeout())
        .layer(middleware::from_fn(auth::headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            telemetry::observe,
        ))
        .layer(telemetry::trace())
        .layer(middleware::from_fn(telemetry::request_id))
        .with_state(state)
}
