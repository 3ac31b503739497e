//! The live workers' registrations.

use axum::extract::State;
use axum::Json;
use cronfleet_common::values::Registration;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::{ErrorBody, HttpError};
use crate::http::AppState;
use crate::read::LegacyWorker;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_workers))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// Each worker's registration: id, hostname, pid, version, startedAt, slots, running,
    /// heartbeatAt, holds (why it claims nothing now; empty while it claims), and labels
    /// (its `--label`s, key to value, which job selectors match).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Registration>,
    /// go-crontab workers registered beside them, by address. They claim through
    /// `lock/<job>` only and ignore pause, run-now, timeouts and env.
    pub legacy: Vec<LegacyWorker>,
}

#[utoipa::path(get, path = "/workers", tag = "workers", responses((status = 200, body = WorkerList), (status = 503, body = ErrorBody)))]
async fn list_workers(State(state): State<AppState>) -> Result<Json<WorkerList>, HttpError> {
    let fleet = state.reads.workers().await?;
    Ok(Json(WorkerList {
        items: fleet.workers,
        legacy: fleet.legacy,
    }))
}
