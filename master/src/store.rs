//! The event store in PostgreSQL: appends events and updates the `jobs` read model in one
//! transaction, and answers the read-side queries.
//!
//! Appends take one transaction-level advisory lock before choosing the next sequence number,
//! so events commit in sequence order and a projector reading by sequence never skips one that
//! committed late.

use chrono::{DateTime, Utc};
use cronfleet_common::{JobName, JobSpec};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::domain::{apply, decide, Command, DomainError, Event, JobState};

/// The advisory lock every append holds until it commits.
pub(crate) const APPEND_LOCK: i64 = 0x6372_6f6e_6665_6c74; // "cronfelt"

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
}

/// A row of the `jobs` read model.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub spec: JobSpec,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// What an accepted write produced, or the first answer to a retried one.
#[derive(Debug)]
pub enum Written {
    Appended {
        events: Vec<StoredEvent>,
        state: Box<JobState>,
    },
    Replayed {
        status: u16,
        response: Value,
    },
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
    /// Only names after this one (the cursor of the previous page).
    pub after_name: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    /// Decides `command` against the job's current state and appends the events, with the read
    /// model, the idempotency answer and a notification for the projector, in one transaction.
    /// `answer` turns the result into the response stored for retries.
    pub async fn execute(
        &self,
        name: &JobName,
        command: Command,
        expected: Option<u64>,
        meta: &RequestMeta,
        answer: impl FnOnce(&[StoredEvent], &JobState) -> (u16, Value),
    ) -> Result<Written, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        if let Some(idempotency) = &meta.idempotency {
            let found = sqlx::query(
                "SELECT request_hash, status, response FROM idempotency WHERE key = $1",
            )
            .bind(&idempotency.key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = found {
                let hash: String = row.try_get("request_hash")?;
                if hash != idempotency.request_hash {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let status: i16 = row.try_get("status")?;
                return Ok(Written::Replayed {
                    status: u16::try_from(status).unwrap_or(200),
                    response: row.try_get("response")?,
                });
            }
        }
        let state = load_state(&mut tx, name).await?;
        let events = decide(name, &state, command, expected)?;
        let mut next_seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        let mut state = state;
        let mut stored = Vec::with_capacity(events.len());
        for event in events {
            next_seq += 1;
            let before = state.clone();
            state = apply(state, &event);
            let row = insert_event(&mut tx, next_seq, name, &state, &event, meta).await?;
            update_read_model(&mut tx, name, &before, &state, &row).await?;
            stored.push(row);
        }
        let (status, response) = answer(&stored, &state);
        if let Some(idempotency) = &meta.idempotency {
            sqlx::query("INSERT INTO idempotency (key, request_hash, status, response) VALUES ($1, $2, $3, $4)")
                .bind(&idempotency.key)
                .bind(&idempotency.request_hash)
                .bind(i16::try_from(status).unwrap_or(200))
                .bind(&response)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(last) = stored.last() {
            sqlx::query("SELECT pg_notify('cron_events', $1)")
                .bind(last.seq.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Written::Appended {
            events: stored,
            state: Box::new(state),
        })
    }

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
             ORDER BY name LIMIT $4"
        ))
        .bind(&filter.name)
        .bind(filter.paused)
        .bind(&filter.after_name)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// Events, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, stream, job_name, version, type, payload, actor, request_id, recorded_at FROM events
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

    /// The highest sequence appended so far (0 when none).
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Rebuilds the read model from the whole log, in one transaction; returns the live jobs and
    /// the last sequence replayed.
    pub async fn rebuild(&self) -> Result<(Vec<JobSpec>, i64), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs").execute(&mut *tx).await?;
        let rows = sqlx::query(
            "SELECT seq, job_name, version, type, payload, actor, request_id, recorded_at FROM events
             WHERE stream = 'job' ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut states: std::collections::BTreeMap<String, JobState> =
            std::collections::BTreeMap::new();
        let mut last = 0;
        for row in &rows {
            let event = event_row(row)?;
            let name =
                JobName::parse(&event.job_name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let before = states.remove(&event.job_name).unwrap_or_default();
            let after = apply(before.clone(), &event.event);
            update_read_model(&mut tx, &name, &before, &after, &event).await?;
            states.insert(event.job_name.clone(), after);
            last = event.seq;
        }
        tx.commit().await?;
        Ok((
            states
                .into_values()
                .filter_map(|state| state.spec)
                .collect(),
            last,
        ))
    }
}

const JOB_COLUMNS: &str =
    "SELECT spec, version, created_at, created_by, updated_at, updated_by FROM jobs";

fn job_row(row: &PgRow) -> Result<JobRow, StoreError> {
    let spec: Value = row.try_get("spec")?;
    Ok(JobRow {
        spec: serde_json::from_value(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn event_row(row: &PgRow) -> Result<StoredEvent, StoreError> {
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

async fn load_state(
    tx: &mut Transaction<'_, Postgres>,
    name: &JobName,
) -> Result<JobState, StoreError> {
    let row = sqlx::query("SELECT spec, version, deleted FROM jobs WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(JobState::default());
    };
    let version: i64 = row.try_get("version")?;
    let deleted: bool = row.try_get("deleted")?;
    let spec: Value = row.try_get("spec")?;
    Ok(JobState {
        version: u64::try_from(version).unwrap_or(0),
        spec: if deleted {
            None
        } else {
            Some(serde_json::from_value(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        },
    })
}

async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    seq: i64,
    name: &JobName,
    state: &JobState,
    event: &Event,
    meta: &RequestMeta,
) -> Result<StoredEvent, StoreError> {
    let payload = serde_json::to_value(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let version = i64::try_from(state.version).unwrap_or(i64::MAX);
    let recorded_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO events (seq, job_name, version, type, payload, actor, request_id, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING recorded_at",
    )
    .bind(seq)
    .bind(name.as_str())
    .bind(version)
    .bind(event.kind())
    .bind(&payload)
    .bind(&meta.actor)
    .bind(&meta.request_id)
    .bind(meta.idempotency.as_ref().map(|i| i.key.as_str()))
    .fetch_one(&mut **tx)
    .await?;
    Ok(StoredEvent {
        seq,
        job_name: name.to_string(),
        version,
        kind: event.kind().to_owned(),
        event: event.clone(),
        actor: meta.actor.clone(),
        request_id: meta.request_id.clone(),
        recorded_at,
    })
}

/// Writes the read-model row for the state after `event`.
async fn update_read_model(
    tx: &mut Transaction<'_, Postgres>,
    name: &JobName,
    before: &JobState,
    after: &JobState,
    event: &StoredEvent,
) -> Result<(), StoreError> {
    let spec = after.spec.as_ref().or(before.spec.as_ref());
    let Some(spec) = spec else { return Ok(()) };
    let spec_json = serde_json::to_value(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO jobs (name, spec, version, paused, deleted, created_at, created_by, updated_at, updated_by, last_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7, $8)
         ON CONFLICT (name) DO UPDATE SET
           spec = EXCLUDED.spec, version = EXCLUDED.version, paused = EXCLUDED.paused,
           deleted = EXCLUDED.deleted, updated_at = EXCLUDED.updated_at,
           updated_by = EXCLUDED.updated_by, last_seq = EXCLUDED.last_seq,
           created_at = CASE WHEN jobs.deleted THEN EXCLUDED.created_at ELSE jobs.created_at END,
           created_by = CASE WHEN jobs.deleted THEN EXCLUDED.created_by ELSE jobs.created_by END",
    )
    .bind(name.as_str())
    .bind(&spec_json)
    .bind(i64::try_from(after.version).unwrap_or(i64::MAX))
    .bind(spec.paused)
    .bind(after.spec.is_none())
    .bind(event.recorded_at)
    .bind(&event.actor)
    .bind(event.seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
