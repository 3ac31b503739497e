//! The audit log: every change to a job, a user, a token or a channel, filtered and paged.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use cronfleet_common::JobSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{bad_cursor, job_name, limit, page_cursor, time_param, PageQuery};
use crate::domain::Event;
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiQuery, AppState};
use crate::notify::channel_store;
use crate::store::{chain, AuditRow, EventFilter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(job_history))
        .routes(routes!(list_events))
}

/// One change in the audit log: to a job, a user or an API token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub seq: i64,
    /// `job`, `user`, `token` or `channel`.
    pub stream: String,
    /// The job name, user name, token id or channel name.
    pub subject: String,
    /// The subject's version after this event.
    pub version: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub request_id: String,
    pub recorded_at: DateTime<Utc>,
    /// SHA-256, in hex, of this event's content and the hash of the event before it: the
    /// chain `cronfleet-master audit verify` checks.
    pub hash: String,
    /// The hash of the event before it, in hex; none for the first event.
    pub prev_hash: Option<String>,
    /// The state before the change, when the change touched it.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The state after the change, when the change touched it.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        let to_json = |spec: &JobSpec| serde_json::to_value(spec).ok();
        let field = |name: &str| row.payload.get(name).filter(|v| !v.is_null()).cloned();
        let (before, after) = match serde_json::from_value::<Event>(row.payload.clone()) {
            Ok(Event::JobCreated { after }) => (None, to_json(&after)),
            Ok(
                Event::JobUpdated { before, after }
                | Event::JobPaused { before, after }
                | Event::JobResumed { before, after },
            ) => (to_json(&before), to_json(&after)),
            Ok(Event::JobDeleted { before }) => (to_json(&before), None),
            Ok(Event::JobChangedOutsideMaster { before, after, .. }) => (
                before.as_ref().and_then(to_json),
                after.as_ref().and_then(to_json),
            ),
            Ok(Event::RunRequested { .. } | Event::KillRequested { .. }) => (None, None),
            Err(_) => (field("before"), field("after")),
        };
        Self {
            seq: row.seq,
            stream: row.stream,
            subject: row.subject,
            version: row.version,
            kind: row.kind,
            actor: row.actor,
            request_id: row.request_id,
            recorded_at: row.recorded_at,
            hash: chain::hex(&row.hash),
            prev_hash: row.prev_hash.as_deref().map(chain::hex),
            before,
            after,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this job's events.
    job: Option<String>,
    /// Only events by this actor.
    actor: Option<String>,
    /// Only events of this type (JobCreated, JobUpdated, JobDeleted, JobPaused, JobResumed,
    /// RunRequested, KillRequested, UserCreated, TokenCreated, TokenRevoked, ChannelCreated,
    /// ChannelUpdated, ChannelDeleted).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// RFC 3339; events at or after.
    since: Option<String>,
    /// RFC 3339; events before.
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn events_page(
    state: &AppState,
    mut filter: EventFilter,
    cursor: Option<&str>,
    limit: i64,
) -> Result<EventPage, HttpError> {
    filter.before_seq = cursor
        .map(|c| c.parse::<i64>().map_err(|_| bad_cursor()))
        .transpose()?;
    filter.limit = limit + 1;
    let mut items: Vec<AuditEvent> = state
        .reads
        .events(&filter)
        .await?
        .into_iter()
        .map(AuditEvent::from)
        .collect();
    let next_cursor = page_cursor(&mut items, limit, |e| e.seq.to_string());
    Ok(EventPage { items, next_cursor })
}

#[utoipa::path(get, path = "/events", tag = "audit", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventPage>, HttpError> {
    if let Some(kind) = &query.kind {
        let streams = [Event::KINDS, crate::accounts::KINDS, channel_store::KINDS];
        if !streams.iter().any(|kinds| kinds.contains(&kind.as_str())) {
            return Err(HttpError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "type",
                format!(
                    "type: {kind:?} is not one of {}",
                    streams.concat().join(", ")
                ),
            ));
        }
    }
    let filter = EventFilter {
        job: query.job,
        actor: query.actor,
        kind: query.kind,
        since: time_param("since", query.since.as_deref())?,
        until: time_param("until", query.until.as_deref())?,
        ..EventFilter::default()
    };
    Ok(Json(
        events_page(&state, filter, query.cursor.as_deref(), limit(query.limit)?).await?,
    ))
}

#[utoipa::path(get, path = "/jobs/{name}/history", tag = "audit", params(("name" = String, Path), PageQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody)))]
async fn job_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<EventPage>, HttpError> {
    let name = job_name(&name)?;
    let filter = EventFilter {
        job: Some(name.to_string()),
        ..EventFilter::default()
    };
    Ok(Json(
        events_page(&state, filter, query.cursor.as_deref(), limit(query.limit)?).await?,
    ))
}
