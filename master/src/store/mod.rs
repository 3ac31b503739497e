//! The event store in PostgreSQL: every change is an event appended to one log ([`append`],
//! the only way in, for jobs, users and tokens alike), with the `jobs` read model updated in
//! the same transaction ([`commands`]); and the queries on both.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use cronfleet_common::{JobName, JobSpec};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

mod append;
pub mod chain;
mod commands;
mod references;
mod versions;

pub(crate) use append::{append, begin, lock_appends, NewEvent};
pub(crate) use commands::execute_in;
pub use versions::PastSpec;

use crate::domain::{DomainError, Event, JobState};

/// Who asked, and how to recognise a retry.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub actor: String,
    pub request_id: String,
    pub idempotency: Option<Idempotency>,
}

/// An `Idempotency-Key` and a hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub job_name: String,
    pub version: i64,
    pub kind: String,
    pub event: Event,
    pub actor: String,
    pub request_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// An event of any stream (`job`, `user`, `token`), as the audit query returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub stream: String,
    /// The job name, user name or token id.
    pub subject: String,
    pub version: i64,
    pub kind: String,
    pub payload: Value,
    pub actor: String,
    pub request_id: String,
    pub recorded_at: DateTime<Utc>,
    /// The SHA-256 of this event and the one before it (see [`chain`]).
    pub hash: Vec<u8>,
    /// The hash of the event before it; `None` for the first.
    pub prev_hash: Option<Vec<u8>>,
}

/// A row of the `jobs` read model.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub spec: JobSpec,
    /// The job's version as clients see it (its ETag): the version of the event that last
    /// changed its spec ([`JobState::spec_version`]).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// What an accepted write appended and the job's state after it. A retry with the same
/// Idempotency-Key appends nothing and gets what the first one appended (`replayed`).
#[derive(Debug)]
pub struct Written {
    pub events: Vec<StoredEvent>,
    pub state: JobState,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data does not parse: {0}")]
    Corrupt(String),
}

/// Filters of the audit query.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub job: Option<String>,
    pub actor: Option<String>,
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events with a smaller sequence (the cursor of the previous page).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// Filters of the job list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Substring of the name.
    pub name: Option<String>,
    pub paused: Option<bool>,
    /// Only jobs whose newest record (see `last_runs`) has one of these statuses.
    pub last_status: Option<Vec<String>>,
    /// Only names after this one (the cursor of the previous page).
    pub after_name: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    /// One job of the read model, if it is live.
    pub async fn job(&self, name: &JobName) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(&format!("{JOB_COLUMNS} WHERE name = $1 AND NOT deleted"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| job_row(&row)).transpose()
    }

    /// Live jobs by name.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE NOT deleted
               AND ($1::text IS NULL OR strpos(name, $1) > 0)
               AND ($2::bool IS NULL OR paused = $2)
               AND ($3::text IS NULL OR name > $3)
               AND ($5::text[] IS NULL
                    OR name IN (SELECT job_name FROM last_runs WHERE status = ANY($5)))
             ORDER BY name LIMIT $4"
        ))
        .bind(&filter.name)
        .bind(filter.paused)
        .bind(&filter.after_name)
        .bind(filter.limit)
        .bind(&filter.last_status)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// The time zone of each named job that exists (a deleted job's is left out).
    pub async fn timezones(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, chrono_tz::Tz>, StoreError> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT name, spec->>'timezone' FROM jobs WHERE name = ANY($1) AND NOT deleted",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, tz)| Some((name, tz?.parse().ok()?)))
            .collect())
    }

    /// Events, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, stream, job_name, version, type, payload, actor, request_id, recorded_at,
                    hash, prev_hash FROM events
             WHERE ($1::text IS NULL OR (stream = 'job' AND job_name = $1))
               AND ($2::text IS NULL OR actor = $2)
               AND ($3::text IS NULL OR type = $3)
               AND ($4::timestamptz IS NULL OR recorded_at >= $4)
               AND ($5::timestamptz IS NULL OR recorded_at < $5)
               AND ($6::bigint IS NULL OR seq < $6)
             ORDER BY seq DESC LIMIT $7",
        )
        .bind(&filter.job)
        .bind(&filter.actor)
        .bind(&filter.kind)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_seq)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    seq: row.try_get("seq")?,
                    stream: row.try_get("stream")?,
                    subject: row.try_get("job_name")?,
                    version: row.try_get("version")?,
                    kind: row.try_get("type")?,
                    payload: row.try_get("payload")?,
                    actor: row.try_get("actor")?,
                    request_id: row.try_get("request_id")?,
                    recorded_at: row.try_get("recorded_at")?,
                    hash: row.try_get("hash")?,
                    prev_hash: row.try_get("prev_hash")?,
                })
            })
            .collect()
    }

    /// Events with a sequence above `after`, oldest first: the projector's feed.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, job_name, version, type, payload, actor, request_id, recorded_at FROM events
             WHERE seq > $1 AND stream = 'job' ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// Every live job, by name.
    pub async fn live_jobs(&self) -> Result<HashMap<String, JobRow>, StoreError> {
        let rows = sqlx::query(&format!("{JOB_COLUMNS} WHERE NOT deleted"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| job_row(row).map(|job| (job.spec.name.to_string(), job)))
            .collect()
    }

    /// The version of a job's stream: its last event's (0 when it has none).
    pub async fn stream_version(&self, name: &JobName) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream = 'job' AND job_name = $1",
        )
        .bind(name.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(version).unwrap_or_default())
    }

    /// Names of the jobs with events above `after` (not yet projected, when `after` is the
    /// projector's checkpoint).
    pub async fn jobs_changed_after(&self, after: i64) -> Result<HashSet<String>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT job_name FROM events WHERE seq > $1 AND stream = 'job'",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        Ok(names.into_iter().collect())
    }

    /// The highest sequence appended so far (0 when none).
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

const JOB_COLUMNS: &str =
    "SELECT spec, version, created_at, created_by, updated_at, updated_by FROM jobs";

fn job_row(row: &PgRow) -> Result<JobRow, StoreError> {
    let spec: JobSpec = serde_json::from_value(row.try_get("spec")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(JobRow {
        version: i64::try_from(spec.version).unwrap_or(i64::MAX),
        spec,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

pub(crate) fn event_row(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let payload: Value = row.try_get("payload")?;
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        job_name: row.try_get("job_name")?,
        version: row.try_get("version")?,
        kind: row.try_get("type")?,
        event: serde_json::from_value(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        actor: row.try_get("actor")?,
        request_id: row.try_get("request_id")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}
