//! A job as it was: its spec at a version, or at a moment, read back from the event that set
//! it. Versions are the ones clients see (the ETag): the version of an event that changed the
//! spec. Run-now and kill events are in the log but are no version of the spec.

use chrono::{DateTime, Utc};
use cronfleet_common::{FieldError, JobName, JobSpec};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::Event;

/// A spec the job had, and the event that gave it.
#[derive(Debug, Clone)]
pub struct PastSpec {
    pub spec: JobSpec,
    pub version: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    /// The event's type (`JobUpdated`…).
    pub kind: String,
}

impl PastSpec {
    /// The spec to revert to, through the same validation as a write (a go-crontab job's
    /// version becomes a cronfleet job, as any update makes it; a schedule that no longer
    /// fires is refused).
    pub fn revived(&self) -> Result<JobSpec, FieldError> {
        let mut value = serde_json::to_value(&self.spec)
            .map_err(|e| FieldError::new("toVersion", e.to_string()))?;
        if let serde_json::Value::Object(object) = &mut value {
            object.remove("legacy");
            object.remove("version");
        }
        JobSpec::from_user_json(value.to_string().as_bytes())
    }
}

const COLUMNS: &str = "SELECT version, type, payload, actor, recorded_at FROM events";

impl Store {
    /// The job's spec at `version`; `None` when no event of the job set a spec at it (none
    /// has that version, it deleted the job, or it was a run-now or a kill).
    pub async fn job_version(
        &self,
        name: &JobName,
        version: i64,
    ) -> Result<Option<PastSpec>, StoreError> {
        let row = sqlx::query(&format!(
            "{COLUMNS} WHERE stream = 'job' AND job_name = $1 AND version = $2"
        ))
        .bind(name.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| past(&row)).transpose().map(Option::flatten)
    }

    /// The job's spec as it was at `at`: the one the last spec-setting event up to then left;
    /// `None` when the job did not exist then.
    pub async fn job_as_of(
        &self,
        name: &JobName,
        at: DateTime<Utc>,
    ) -> Result<Option<PastSpec>, StoreError> {
        let row = sqlx::query(&format!(
            "{COLUMNS} WHERE stream = 'job' AND job_name = $1 AND recorded_at <= $2
               AND type = ANY($3) ORDER BY seq DESC LIMIT 1"
        ))
        .bind(name.as_str())
        .bind(at)
        .bind(Event::SPEC_KINDS)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| past(&row)).transpose().map(Option::flatten)
    }
}

fn past(row: &PgRow) -> Result<Option<PastSpec>, StoreError> {
    let payload: serde_json::Value = row.try_get("payload")?;
    let event: Event =
        serde_json::from_value(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let Some(Some(spec)) = event.spec_after() else {
        return Ok(None);
    };
    Ok(Some(PastSpec {
        spec: spec.clone(),
        version: row.try_get("version")?,
        recorded_at: row.try_get("recorded_at")?,
        actor: row.try_get("actor")?,
        kind: row.try_get("type")?,
    }))
}
