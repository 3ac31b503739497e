//! A job as the API shows it, in answers to reads and to writes.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use cronfleet_common::{JobName, JobSpec, Mode, NotifyRule, Retention, RetryPolicy, Selector};
use serde::Serialize;
use utoipa::ToSchema;

use super::policy::{RetentionSchema, RetrySchema, RunMode, SelectorValues};
use crate::store::JobRow;

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub name: String,
    pub command: String,
    pub cron_expr: String,
    pub timezone: String,
    pub timeout_secs: Option<u64>,
    /// Seconds after its planned time by which a tick must start, else it is `missed`;
    /// none: the smaller of 60 s and the time to the next tick.
    pub starting_deadline_secs: Option<u64>,
    /// `forbid`, `allow` or `replace`.
    pub concurrency: String,
    pub paused: bool,
    pub description: String,
    pub env: BTreeMap<String, String>,
    /// The shell the command runs under.
    pub shell: String,
    /// The directory the command starts in; none: the worker's own.
    pub working_dir: Option<String>,
    /// Which workers may run the job: label key to the value, or values, its label must
    /// have. Empty: any worker.
    #[schema(value_type = BTreeMap<String, SelectorValues>)]
    pub selector: Selector,
    /// `one` matching worker runs each tick, or `all` of them do.
    #[schema(value_type = RunMode)]
    pub mode: Mode,
    /// How a failed tick is attempted again, with every default filled in; none: it is not.
    #[schema(value_type = Option<RetrySchema>)]
    pub retry: Option<RetryPolicy>,
    /// Channels told of the job's tick outcomes: `{channel, on, afterFailures}` each.
    #[schema(value_type = Vec<Object>)]
    pub notify: Vec<NotifyRule>,
    /// Jobs run once each when a tick ends succeeded.
    #[schema(value_type = Vec<String>)]
    pub on_success: Vec<JobName>,
    /// Jobs run once each when a tick ends failed.
    #[schema(value_type = Vec<String>)]
    pub on_failure: Vec<JobName>,
    /// How long its records are kept, where it sets its own; none: the fleet's default.
    #[schema(value_type = Option<RetentionSchema>)]
    pub retention: Option<Retention>,
    /// A go-crontab job adopted from etcd (its value has only name, command and cronExpr):
    /// workers read it in their local time zone under `/bin/bash`. An update makes it a
    /// cronfleet job.
    pub legacy: bool,
    /// The job's version: send it back in `If-Match` or `version` to update.
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
    /// The next fire times, in UTC.
    pub next_runs: Vec<DateTime<Utc>>,
}

impl JobView {
    pub fn new(spec: &JobSpec, version: i64) -> Self {
        Self {
            name: spec.name.to_string(),
            command: spec.command.clone(),
            cron_expr: spec.cron_expr.clone(),
            timezone: spec.timezone.name().to_owned(),
            timeout_secs: spec.timeout_secs,
            starting_deadline_secs: spec.starting_deadline_secs,
            concurrency: spec.concurrency.as_str().to_owned(),
            paused: spec.paused,
            description: spec.description.clone(),
            env: spec.env.clone(),
            shell: spec.shell().to_owned(),
            working_dir: spec.working_dir.clone(),
            selector: spec.selector.clone(),
            mode: spec.mode,
            retry: spec.retry.clone(),
            notify: spec.notify.clone(),
            on_success: spec.on_success.clone(),
            on_failure: spec.on_failure.clone(),
            retention: (!spec.retention.is_default()).then_some(spec.retention),
            legacy: spec.legacy,
            version,
            created_at: None,
            created_by: None,
            updated_at: None,
            updated_by: None,
            next_runs: spec.schedule().upcoming(Utc::now(), 5),
        }
    }

    pub fn from_row(row: &JobRow) -> Self {
        Self {
            created_at: Some(row.created_at),
            created_by: Some(row.created_by.clone()),
            updated_at: Some(row.updated_at),
            updated_by: Some(row.updated_by.clone()),
            ..Self::new(&row.spec, row.version)
        }
    }
}
