//! The audit log, filtered and paged, and how one change reads on a page.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::show;
use super::PAGE_SIZE;
use crate::accounts::Session;
use crate::http::api::audit::AuditEvent;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;
use crate::store::{AuditRow, EventFilter};

/// One change, as the audit page and a job's history show it.
#[derive(Debug)]
pub struct ChangeView {
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    pub at: String,
    pub version: i64,
    pub subject: String,
    pub diff: Vec<String>,
    /// The event left the job a spec, which its version page shows.
    pub sets_spec: bool,
}

/// One change in the audit log as a page shows it, its time in `tz`.
pub fn change_view(row: AuditRow, tz: chrono_tz::Tz) -> ChangeView {
    let event = AuditEvent::from(row);
    ChangeView {
        sets_spec: event.after.is_some() && event.stream == "job",
        seq: event.seq,
        diff: views::diff(event.before.as_ref(), event.after.as_ref()),
        kind: event.kind,
        actor: event.actor,
        at: views::at(event.recorded_at, tz),
        version: event.version,
        subject: event.subject,
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditFilter {
    #[serde(default)]
    job: String,
    #[serde(default)]
    actor: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    filter: AuditFilter,
    events: Vec<ChangeView>,
    error: Option<String>,
    next_page: Option<String>,
}

/// An optional time typed in the filter form.
fn time(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| format!("{text:?} is not an RFC 3339 time such as 2026-11-25T00:00:00Z"))
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, HttpError> {
    let nav = Nav::for_session(&session);
    let (since, until) = match (time(&filter.since), time(&filter.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            return show(&AuditPage {
                nav,
                filter,
                events: Vec::new(),
                error: Some(e),
                next_page: None,
            })
        }
    };
    let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    let query = EventFilter {
        job: some(&filter.job),
        actor: some(&filter.actor),
        kind: some(&filter.kind),
        since,
        until,
        before_seq: filter.before,
        limit: PAGE_SIZE + 1,
    };
    let mut rows = state.reads.events(&query).await?;
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let events: Vec<ChangeView> = rows
        .into_iter()
        .map(|row| change_view(row, chrono_tz::Tz::UTC))
        .collect();
    let next_page = more.then(|| {
        let before = events.last().map(|e| e.seq.to_string()).unwrap_or_default();
        let pairs = [
            ("job", filter.job.as_str()),
            ("actor", &filter.actor),
            ("type", &filter.kind),
            ("since", &filter.since),
            ("until", &filter.until),
            ("before", &before),
        ];
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    });
    show(&AuditPage {
        nav,
        filter,
        events,
        error: None,
        next_page,
    })
}
