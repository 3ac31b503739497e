//! One job's page: its spec and run policies, its outcomes (notify rules, the jobs that chain
//! to it and those it chains to, its recent deliveries), its recent executions grouped by
//! tick, its history, and the warnings about who may run it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use cronfleet_common::values::Registration;
use cronfleet_common::{JobName, JobSpec, NotifyRule, Retention};

use super::audit::ChangeView;
use super::deliveries::{DeliveryRow, RECENT_DELIVERIES};
use super::running::RunningView;
use super::runs::RunView;
use super::show;
use super::{change_view, no_such_job, parse_name};
use crate::accounts::Session;
use crate::http::error::HttpError;
use crate::http::layout::Nav;
use crate::http::views;
use crate::http::AppState;
use crate::notify::delivery_log::DeliveryFilter;
use crate::read::{Run, RunCursor};
use crate::store::{EventFilter, JobRow};

/// Executions the page shows.
const RECENT_RUNS: usize = 20;

struct JobView {
    name: String,
    command: String,
    cron_expr: String,
    schedule_words: String,
    timezone: String,
    paused: bool,
    timeout: String,
    starting_deadline: String,
    concurrency: String,
    shell: String,
    working_dir: String,
    selector: String,
    mode: &'static str,
    retry: String,
    /// How long its records are kept, and whether that is the fleet's default.
    retention: String,
    /// A go-crontab job (its three fields only): workers read it in their own time zone.
    legacy: bool,
    description: String,
    /// Each notify rule: the channel, and what it is told of.
    notify: Vec<(String, String)>,
    on_success: Vec<String>,
    on_failure: Vec<String>,
    version: i64,
    updated_at: String,
    updated_by: String,
    next_runs: Vec<String>,
}

impl JobView {
    fn new(row: &JobRow, default: Retention) -> Self {
        let spec = &row.spec;
        Self {
            name: spec.name.to_string(),
            command: spec.command.clone(),
            cron_expr: spec.cron_expr.clone(),
            schedule_words: views::schedule_words(&spec.cron_expr),
            timezone: spec.timezone.name().to_owned(),
            paused: spec.paused,
            timeout: views::timeout(spec),
            starting_deadline: views::starting_deadline(spec),
            concurrency: spec.concurrency.as_str().to_owned(),
            shell: spec.shell().to_owned(),
            working_dir: spec
                .working_dir
                .clone()
                .unwrap_or_else(|| "the worker's own".to_owned()),
            selector: views::selector(&spec.selector),
            mode: views::mode(spec.mode),
            retry: views::retry(spec.retry.as_ref()),
            retention: views::retention(spec.retention, default),
            legacy: spec.legacy,
            description: spec.description.clone(),
            notify: spec.notify.iter().map(rule_words).collect(),
            on_success: spec.on_success.iter().map(|j| j.to_string()).collect(),
            on_failure: spec.on_failure.iter().map(|j| j.to_string()).collect(),
            version: row.version,
            updated_at: views::at(row.updated_at, spec.timezone),
            updated_by: row.updated_by.clone(),
            next_runs: spec
                .schedule()
                .upcoming(Utc::now(), 5)
                .into_iter()
                .map(|t| views::at(t, spec.timezone))
                .collect(),
        }
    }
}

/// A notify rule as the page shows it: the channel, and its outcomes in words.
fn rule_words(rule: &NotifyRule) -> (String, String) {
    let on: Vec<&str> = rule.on.iter().map(|outcome| outcome.as_str()).collect();
    let mut words = on.join(", ");
    if rule.after_failures > 1 {
        let n = rule.after_failures;
        words.push_str(&format!(" (a failure once {n} ticks in a row have failed)"));
    }
    (rule.channel.to_string(), words)
}

/// The records of one tick on the page: a tick with several (its retry attempts, or each
/// worker's run of a job run on every worker) gets a heading row and its records in attempt
/// order beneath it.
struct TickGroup {
    /// `tick <id>, planned <time>: <n> attempts`, for a tick with several records.
    heading: Option<String>,
    runs: Vec<RunView>,
}

/// Groups records that share a `tickId`, each group where its newest record is.
fn tick_groups(runs: &[Run], tz: chrono_tz::Tz) -> Vec<TickGroup> {
    let mut groups: Vec<(Option<&str>, Vec<&Run>)> = Vec::new();
    for run in runs {
        let tick = run.record.tick_id.as_deref();
        match groups
            .iter_mut()
            .find(|(id, _)| tick.is_some() && *id == tick)
        {
            Some((_, members)) => members.push(run),
            None => groups.push((tick, vec![run])),
        }
    }
    groups
        .into_iter()
        .map(|(tick, mut members)| {
            members.sort_by_key(|run| (run.record.attempt, run.record.start_time));
            let heading = tick.filter(|_| members.len() > 1).map(|tick| {
                let attempts = members.iter().filter_map(|r| r.record.attempt).max();
                let what = if attempts.unwrap_or(1) > 1 {
                    format!("{} attempts", members.len())
                } else {
                    format!("{} runs, one per worker", members.len())
                };
                let planned = members.first().map_or(0, |r| r.record.plan_time);
                let planned = chrono::DateTime::from_timestamp_millis(planned)
                    .map_or_else(|| "-".to_owned(), |t| views::when_in(t, tz));
                format!("tick {tick}, planned {planned}: {what}")
            });
            TickGroup {
                heading,
                runs: members
                    .into_iter()
                    .map(|run| RunView::new(run, tz))
                    .collect(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    job: JobView,
    ticks: Vec<TickGroup>,
    history: Vec<ChangeView>,
    /// The live jobs that chain to this one.
    upstream: Vec<String>,
    deliveries: Vec<DeliveryRow>,
    /// Addresses of registered go-crontab workers, which run this job by their own rules.
    legacy_workers: Vec<String>,
    /// The job's selector, in words, when no live worker's labels match it.
    unmatched_selector: Option<String>,
    /// When the job's latest change was written to etcd outside the master.
    changed_outside: Option<String>,
    /// Its runs in progress, listed before the records of runs that ended.
    running: Vec<RunningView>,
    /// The link to its older records, when there are more.
    older_runs: Option<String>,
    /// On a page of older records, the link back to the newest.
    newest_runs: Option<String>,
}

/// The page's query: the flash of a form that redirected here, and where its list of
/// records starts (`runs`, a cursor) when paging through older ones.
#[derive(serde::Deserialize)]
pub(super) struct JobPageQuery {
    done: Option<String>,
    runs: Option<String>,
}

/// The selector in words when the job has one and no registered worker matches it.
fn unmatched_selector(spec: &JobSpec, workers: &[Registration]) -> Option<String> {
    let selector = &spec.selector;
    let matched = workers.iter().any(|w| selector.matches(&w.labels));
    (!selector.is_empty() && !matched).then(|| selector.describe())
}

/// `?runs=`: where the page of runs starts; none for the newest.
fn runs_cursor(text: Option<&str>) -> Result<Option<RunCursor>, HttpError> {
    match text.filter(|c| !c.is_empty()) {
        Some(text) => RunCursor::parse(text).map(Some).ok_or_else(|| {
            HttpError::query(cronfleet_common::FieldError::new(
                "runs",
                "not a position in this job's runs",
            ))
        }),
        None => Ok(None),
    }
}

/// The job's last 20 changes, newest first, their times in `tz`.
async fn history(
    state: &AppState,
    name: &JobName,
    tz: chrono_tz::Tz,
) -> Result<Vec<ChangeView>, HttpError> {
    let filter = EventFilter {
        job: Some(name.to_string()),
        limit: 20,
        ..EventFilter::default()
    };
    Ok(state
        .reads
        .events(&filter)
        .await?
        .into_iter()
        .map(|event| change_view(event, tz))
        .collect())
}

pub(super) async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(query): Query<JobPageQuery>,
) -> Result<Response, HttpError> {
    let nav = Nav::new(&session, query.done.as_deref());
    let name = parse_name(&name)?;
    let cursor = runs_cursor(query.runs.as_deref())?;
    let row = state.store.job(&name).await?.ok_or_else(no_such_job)?;
    let (records, fleet, running) = tokio::try_join!(
        state.reads.executions(&name, cursor.as_ref(), RECENT_RUNS),
        state.reads.workers(),
        state.reads.running()
    )?;
    let now = chrono::Utc::now().timestamp_millis();
    let running = running
        .iter()
        .filter(|run| run.job == name.as_str())
        .map(|run| RunningView::new(run, now, row.spec.timezone))
        .collect();
    let filter = DeliveryFilter::Job(name.clone());
    let (upstream, deliveries) = tokio::try_join!(
        state.store.upstream(&name),
        state.store.deliveries(&filter, RECENT_DELIVERIES)
    )?;
    let history = history(&state, &name, row.spec.timezone).await?;
    let changed_outside = history
        .first()
        .filter(|change| change.kind == "JobChangedOutsideMaster")
        .map(|change| change.at.clone());
    let here = format!("/jobs/{}", views::path_segment(name.as_str()));
    let older_runs = records.next.as_ref().map(|next| {
        let query = serde_urlencoded::to_string([("runs", next.to_text())]).unwrap_or_default();
        format!("{here}?{query}#executions")
    });
    show(&JobPage {
        nav,
        older_runs,
        newest_runs: cursor.map(|_| format!("{here}#executions")),
        job: JobView::new(&row, state.retention),
        ticks: tick_groups(&records.runs, row.spec.timezone),
        history,
        upstream,
        deliveries: deliveries.into_iter().map(DeliveryRow::new).collect(),
        legacy_workers: fleet.legacy.into_iter().map(|w| w.address).collect(),
        unmatched_selector: unmatched_selector(&row.spec, &fleet.workers),
        changed_outside,
        running,
    })
}
