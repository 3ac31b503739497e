//! One run's page, with the other records of its tick (retry attempts, or each worker's run
//! of a job run on every worker).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use cronfleet_common::{ExecutionRecord, MissReason};
use serde::Deserialize;

use super::show;
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;
use crate::read::Run;

/// Most records of one tick the page lists.
const TICK_RUNS: i64 = 100;
/// How long before its planned time a record of a tick may say it started: the clocks of
/// workers disagree a little.
const CLOCK_MARGIN_MS: i64 = 60_000;

struct ExecutionView {
    run_id: String,
    job: String,
    status: String,
    err: String,
    planned: String,
    scheduled: String,
    started: String,
    ended: String,
    duration: String,
    exit: String,
    worker: String,
    fencing_token: i64,
    started_by: String,
    killed_by: Option<String>,
    source_run_id: Option<String>,
    /// Why a missed tick did not start.
    reason: Option<&'static str>,
    tick_id: Option<String>,
    attempt: Option<u32>,
    command: String,
    output: String,
    output_bytes: i64,
    truncated: bool,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    nav: Nav,
    run: ExecutionView,
    /// Every record of this run's tick, this one included, when there are others.
    tick_runs: Vec<TickRunView>,
}

/// One record of the tick, as a row.
struct TickRunView {
    run_id: String,
    attempt: String,
    status: String,
    started: String,
    worker: String,
    this: bool,
}

impl TickRunView {
    fn new(run: &Run, this: &str, tz: chrono_tz::Tz) -> Self {
        let r = &run.record;
        Self {
            run_id: r.run_id.clone(),
            attempt: r.attempt.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            status: r.status.as_str().to_owned(),
            started: views::at_ms(r.start_time, tz),
            worker: r.worker_id.clone(),
            this: r.run_id == this,
        }
    }
}

/// Every record of `record`'s tick, in the order they started: none when it has no tick id
/// or is alone in it.
async fn tick_runs(
    state: &AppState,
    record: &ExecutionRecord,
    tz: chrono_tz::Tz,
) -> Result<Vec<TickRunView>, HttpError> {
    let Some(tick_id) = record.tick_id.as_deref() else {
        return Ok(Vec::new());
    };
    let planned = tick_id
        .strip_prefix("schedule-")
        .and_then(|ms| ms.parse::<i64>().ok())
        .unwrap_or(record.plan_time);
    let since = planned.min(record.start_time) - CLOCK_MARGIN_MS;
    let runs = state
        .reads
        .tick_runs(&record.job_name, tick_id, since, TICK_RUNS)
        .await?;
    if runs.len() < 2 {
        return Ok(Vec::new());
    }
    Ok(runs
        .iter()
        .map(|run| TickRunView::new(run, &record.run_id, tz))
        .collect())
}

/// How long after its id was made a run without a record or keys is taken for one whose
/// record is on its way, rather than for no run at all.
const RECORD_ON_ITS_WAY_SECS: i64 = 120;

/// Whether `run_id` is a worker's run id (a UUIDv7) made within [`RECORD_ON_ITS_WAY_SECS`]
/// of `now`.
fn just_started(run_id: &str, now: DateTime<Utc>) -> bool {
    let Some(made) = uuid::Uuid::parse_str(run_id)
        .ok()
        .filter(|id| id.get_version_num() == 7)
        .and_then(|id| id.get_timestamp())
    else {
        return false;
    };
    let (secs, _) = made.to_unix();
    let age = now.timestamp() - i64::try_from(secs).unwrap_or(i64::MAX);
    (-5..=RECORD_ON_ITS_WAY_SECS).contains(&age)
}

/// `?from=running`: the page was following the run while it ran.
#[derive(Deserialize)]
pub(super) struct PageQuery {
    from: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(run_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, HttpError> {
    let nav = Nav::for_session(&session);
    let Some(run) = state.reads.execution(&run_id).await? else {
        // A run has its page from the moment it starts; its record comes when it ends, a
        // moment after its keys go. A page opened in that moment (a link to a run that was
        // running when its list was drawn) follows it like one that watched it run.
        let following =
            query.from.as_deref() == Some("running") || just_started(&run_id, Utc::now());
        return super::running::run_page(&state, &session, &run_id, following)
            .await?
            .ok_or_else(|| HttpError::not_found("There is no such run."));
    };
    let zones = state
        .store
        .timezones(std::slice::from_ref(&run.record.job_name))
        .await?;
    // A deleted job's runs are shown in UTC.
    let tz = zones
        .get(&run.record.job_name)
        .copied()
        .unwrap_or(chrono_tz::Tz::UTC);
    let tick_runs = tick_runs(&state, &run.record, tz).await?;
    let r = run.record;
    let run = ExecutionView {
        status: r.status.as_str().to_owned(),
        planned: views::at_ms(r.plan_time, tz),
        scheduled: views::at_ms(r.schedule_time, tz),
        started: views::at_ms(r.start_time, tz),
        ended: views::at_ms(r.end_time, tz),
        duration: views::duration_ms(r.end_time - r.start_time),
        exit: views::exit(&r),
        started_by: views::started_by(&r),
        killed_by: r.killed_by.clone(),
        source_run_id: r.source_run_id.clone(),
        reason: r.reason.map(MissReason::as_str),
        tick_id: r.tick_id,
        attempt: r.attempt,
        run_id: r.run_id,
        job: r.job_name,
        err: r.err,
        worker: if run.legacy {
            "a go-crontab worker (its records do not say which)".to_owned()
        } else {
            r.worker_id
        },
        fencing_token: r.fencing_token,
        command: r.command,
        output: r.output,
        output_bytes: r.output_bytes,
        truncated: r.truncated,
    };
    show(&ExecutionPage {
        nav,
        run,
        tick_runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_worker_run_id_is_one_whose_record_is_on_its_way() {
        let now = Utc::now();
        let fresh = uuid::Uuid::now_v7().to_string();
        assert!(just_started(&fresh, now));
        assert!(!just_started(&fresh, now + chrono::TimeDelta::seconds(121)));
        assert!(!just_started(&uuid::Uuid::new_v4().to_string(), now));
        assert!(!just_started("missed-nightly-1764000000000", now));
        assert!(!just_started("not a run", now));
    }
}
