//! Job commands: decide against the job's state, append the events and update the read model
//! in one transaction; replay a retried Idempotency-Key; rebuild the read model from the log.

use cronfleet_common::{JobName, JobSpec};
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};

use super::{
    append, begin, event_row, NewEvent, RequestMeta, Store, StoreError, StoredEvent, Written,
};
use crate::domain::{apply, check_links, decide, needs_links, Command, Event, JobState, Links};

impl Store {
    /// Decides `command` against the job's current state and appends the events, with the read
    /// model, the request's idempotency key and a notification for the projector, in one
    /// transaction. A retry of an idempotent request appends nothing and gets the first one's
    /// events back.
    #[tracing::instrument(skip_all, fields(job.name = %name, request.id = %meta.request_id))]
    pub async fn execute(
        &self,
        name: &JobName,
        command: Command,
        expected: Option<u64>,
        meta: &RequestMeta,
    ) -> Result<Written, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let written = execute_in(&mut tx, name, command, expected, meta).await?;
        tx.commit().await?;
        Ok(written)
    }

    #[tracing::instrument(skip_all)]
    pub async fn rebuild(&self) -> Result<(Vec<JobSpec>, i64), StoreError> {
        let mut tx = begin(&self.pool).await?;
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

/// [`Store::execute`] inside `tx`, which holds the append lock ([`begin`]); the caller
/// commits. A refused command leaves `tx` as it was.
pub(crate) async fn execute_in(
    tx: &mut Transaction<'_, Postgres>,
    name: &JobName,
    command: Command,
    expected: Option<u64>,
    meta: &RequestMeta,
) -> Result<Written, StoreError> {
    if let Some(idempotency) = &meta.idempotency {
        let found = sqlx::query("SELECT request_hash, job_version FROM idempotency WHERE key = $1")
            .bind(&idempotency.key)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = found {
            if row.try_get::<String, _>("request_hash")? != idempotency.request_hash {
                return Err(StoreError::IdempotencyMismatch);
            }
            let version: Option<i64> = row.try_get("job_version")?;
            return replay(tx, name, &idempotency.key, version).await;
        }
    }
    let mut state = load_state(tx, name).await?;
    if needs_links(&command) {
        check_links(name, &command, &load_links(tx).await?)?;
    }
    let events = decide(name, &state, command, expected)?;
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        let before = state.clone();
        state = apply(state, &event);
        let row = append_job_event(tx, name, &state, event, meta).await?;
        update_read_model(tx, name, &before, &state, &row).await?;
        stored.push(row);
    }
    if let Some(idempotency) = &meta.idempotency {
        sqlx::query("INSERT INTO idempotency (key, request_hash, job_version) VALUES ($1, $2, $3)")
            .bind(&idempotency.key)
            .bind(&idempotency.request_hash)
            .bind(i64::try_from(state.version).unwrap_or(i64::MAX))
            .execute(&mut **tx)
            .await?;
    }
    if let Some(last) = stored.last() {
        sqlx::query("SELECT pg_notify('cron_events', $1)")
            .bind(last.seq.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(Written {
        events: stored,
        state,
        replayed: false,
    })
}

/// Appends `event` of job `name`, whose state after it is `state`.
async fn append_job_event(
    tx: &mut Transaction<'_, Postgres>,
    name: &JobName,
    state: &JobState,
    event: Event,
    meta: &RequestMeta,
) -> Result<StoredEvent, StoreError> {
    let payload = serde_json::to_value(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let version = i64::try_from(state.version).unwrap_or(i64::MAX);
    let new = NewEvent {
        stream: "job",
        subject: name.as_str(),
        version: Some(version),
        kind: event.kind(),
        payload: &payload,
    };
    let (seq, recorded_at) = append(tx, new, meta).await?;
    Ok(StoredEvent {
        seq,
        job_name: name.to_string(),
        version,
        kind: event.kind().to_owned(),
        event,
        actor: meta.actor.clone(),
        request_id: meta.request_id.clone(),
        recorded_at,
    })
}

/// What the first request with `key` appended, and the job's state right after it: at
/// `version`, as recorded with the key (a request that changed nothing appended no event).
/// Keys recorded before versions were kept read the state after their last event.
async fn replay(
    tx: &mut Transaction<'_, Postgres>,
    name: &JobName,
    key: &str,
    version: Option<i64>,
) -> Result<Written, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, job_name, version, type, payload, actor, request_id, recorded_at FROM events
         WHERE idempotency_key = $1 AND stream = 'job' ORDER BY seq",
    )
    .bind(key)
    .fetch_all(&mut **tx)
    .await?;
    let events = rows.iter().map(event_row).collect::<Result<Vec<_>, _>>()?;
    let version = version.or_else(|| events.last().map(|event| event.version));
    let history = sqlx::query(
        "SELECT seq, job_name, version, type, payload, actor, request_id, recorded_at FROM events
         WHERE stream = 'job' AND job_name = $1 AND ($2::bigint IS NULL OR version <= $2)
         ORDER BY seq",
    )
    .bind(name.as_str())
    .bind(version)
    .fetch_all(&mut **tx)
    .await?;
    let mut state = JobState::default();
    for row in &history {
        state = apply(state, &event_row(row)?.event);
    }
    Ok(Written {
        events,
        state,
        replayed: true,
    })
}

/// Every live job and its chain targets, and every channel. Read under the append lock, so no
/// other write can close a cycle between this check and the commit.
async fn load_links(tx: &mut Transaction<'_, Postgres>) -> Result<Links, StoreError> {
    let rows = sqlx::query(
        "SELECT name, spec->'onSuccess' AS on_success, spec->'onFailure' AS on_failure
         FROM jobs WHERE NOT deleted",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut links = Links::default();
    let corrupt = |e: String| StoreError::Corrupt(e);
    for row in &rows {
        let name =
            JobName::parse(row.try_get::<&str, _>("name")?).map_err(|e| corrupt(e.to_string()))?;
        let mut targets = Vec::new();
        for column in ["on_success", "on_failure"] {
            if let Some(list) = row.try_get::<Option<Value>, _>(column)? {
                let list: Vec<JobName> =
                    serde_json::from_value(list).map_err(|e| corrupt(e.to_string()))?;
                targets.extend(list);
            }
        }
        if !targets.is_empty() {
            links.chains.insert(name.clone(), targets);
        }
        links.jobs.insert(name);
    }
    let channels: Vec<String> = sqlx::query_scalar("SELECT name FROM channels")
        .fetch_all(&mut **tx)
        .await?;
    for channel in channels {
        links.channels.insert(
            cronfleet_common::ChannelName::parse(&channel, "channel")
                .map_err(|e| corrupt(e.to_string()))?,
        );
    }
    Ok(links)
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
           deleted = EXCLUDED.deleted, last_seq = EXCLUDED.last_seq,
           updated_at = CASE WHEN $9 THEN EXCLUDED.updated_at ELSE jobs.updated_at END,
           updated_by = CASE WHEN $9 THEN EXCLUDED.updated_by ELSE jobs.updated_by END,
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
    // A run-now or kill request is on the record, but is no change to the job.
    .bind(!matches!(
        event.event,
        Event::RunRequested { .. } | Event::KillRequested { .. }
    ))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
