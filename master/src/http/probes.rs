//! Liveness, readiness and the metrics endpoint.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mongodb::bson::doc;
use serde_json::json;

use super::{fail_fast, AppState};
use crate::projector;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: PostgreSQL and etcd as the health watcher last saw them (the same state that
/// answers other requests 503 at once), and MongoDB answering within a second.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let limit = Duration::from_secs(1);
    let [(_, postgres), (_, etcd)] = fail_fast::checks(&state.health);
    let mongo = tokio::time::timeout(
        limit,
        state
            .reads
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

pub async fn metrics(State(state): State<AppState>) -> Response {
    let lag = projector::lag(&state.store, &state.reads.etcd, &state.reads.keys).await;
    let body = state.metrics.render(lag);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
