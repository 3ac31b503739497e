//! A job's run statistics: runs by status, success rate and duration percentiles over the
//! last 24 hours and 7 days, runs per day, and its recent durations.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::job_name;
use crate::http::error::{ErrorBody, HttpError};
use crate::http::AppState;
use crate::read::stats::Window;

/// Recent runs whose durations the stats list.
pub const RECENT_DURATIONS: usize = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(job_stats))
}

/// Runs over a window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowStats {
    pub runs: i64,
    /// Records by status.
    pub by_status: BTreeMap<String, i64>,
    /// Succeeded among runs that succeeded or failed in any way (skips do not count); null
    /// without any.
    pub success_rate: Option<f64>,
    /// Median duration of the runs that started a process, ms (within a few percent).
    pub duration_p50_ms: Option<i64>,
    pub duration_p95_ms: Option<i64>,
}

impl From<Window> for WindowStats {
    fn from(w: Window) -> Self {
        Self {
            runs: w.runs,
            by_status: w.by_status,
            success_rate: w.success_rate,
            duration_p50_ms: w.p50_ms,
            duration_p95_ms: w.p95_ms,
        }
    }
}

/// One day, in the job's time zone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayStats {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub succeeded: i64,
    /// Every failure status, missed included.
    pub failed: i64,
    pub skipped: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    pub job: String,
    /// The zone the days are in.
    pub timezone: String,
    pub last_24h: WindowStats,
    pub last_7d: WindowStats,
    /// The last 14 days, oldest first.
    pub daily: Vec<DayStats>,
    /// Durations of the job's last 50 records that started a process, oldest first, ms.
    pub recent_durations_ms: Vec<i64>,
}

#[utoipa::path(get, path = "/jobs/{name}/stats", tag = "executions", params(("name" = String, Path)),
    description = "Counted by the notifier from the records it reads (from its first start on); kept 35 days.",
    responses((status = 200, body = JobStats), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn job_stats(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobStats>, HttpError> {
    let name = job_name(&name)?;
    let row = state
        .store
        .job(&name)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("job {name} does not exist")))?;
    let tz = row.spec.timezone;
    let (stats, recent) = tokio::try_join!(
        state.reads.job_stats(&name, Utc::now(), tz),
        state.reads.recent_durations(&name, RECENT_DURATIONS)
    )?;
    Ok(Json(JobStats {
        job: name.to_string(),
        timezone: tz.name().to_owned(),
        last_24h: stats.last_24h.into(),
        last_7d: stats.last_7d.into(),
        daily: stats
            .daily
            .into_iter()
            .map(|d| DayStats {
                date: d.date.to_string(),
                succeeded: d.succeeded,
                failed: d.failed,
                skipped: d.other,
            })
            .collect(),
        recent_durations_ms: recent,
    }))
}
