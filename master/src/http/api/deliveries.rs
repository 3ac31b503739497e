//! The delivery log: a job's deliveries (whoever reads jobs) and a channel's (admins), the
//! newest first, each with its newest tries.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{channel_name, job_name, limit};
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiQuery, AppState};
use crate::notify::delivery_log::{DeliveryFilter, DeliveryView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(job_deliveries))
        .routes(routes!(channel_deliveries))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first. A deleted job's or channel's deliveries stay in the log.
    pub items: Vec<DeliveryView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// How many of the newest deliveries, 1-500 (default 50).
    limit: Option<i64>,
}

async fn list(
    state: &AppState,
    filter: DeliveryFilter,
    query: DeliveryQuery,
) -> Result<Json<DeliveryList>, HttpError> {
    let items = state.store.deliveries(&filter, limit(query.limit)?).await?;
    Ok(Json(DeliveryList { items }))
}

#[utoipa::path(get, path = "/jobs/{name}/deliveries", tag = "channels",
    params(("name" = String, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn job_deliveries(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, HttpError> {
    let filter = DeliveryFilter::Job(job_name(&name)?);
    list(&state, filter, query).await
}

#[utoipa::path(get, path = "/channels/{name}/deliveries", tag = "channels",
    params(("name" = String, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn channel_deliveries(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, HttpError> {
    let filter = DeliveryFilter::Channel(channel_name(&name)?);
    list(&state, filter, query).await
}
