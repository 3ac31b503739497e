//! Each job's newest execution record, kept in PostgreSQL (`last_runs`) so the dashboard reads
//! a page of jobs' last runs in one indexed query rather than one MongoDB lookup per job.
//!
//! The notifier keeps it: [`record`] in the transaction that acts on each batch of records it
//! reads, and [`fill`] for jobs that have no row yet (history from before the table, a job
//! just created or recreated), looked up in MongoDB once and stored — with no run when the job
//! has none. [`LastRuns::of`] falls back to MongoDB for a job without a row, so the dashboard
//! is right before the notifier has filled it, and at most one notifier poll (about half a
//! second) behind after. Rows of deleted jobs are dropped by [`fill`]. Writes only ever move a
//! row to a newer record (by start time, then run id), so the forward read, the fill and a
//! second notifier for a moment can land in any order.

use std::collections::HashMap;

use futures_util::StreamExt;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::Collection;
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{ReadError, Run};
use cronfleet_common::ExecutionRecord;

/// Jobs filled per call of [`fill`].
pub const FILL_BATCH: usize = 500;
/// MongoDB lookups [`fill`] has in flight at once.
const FILL_CONCURRENCY: usize = 8;

/// What the dashboard shows of a job's newest record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    pub status: String,
    pub start_time: i64,
    pub end_time: i64,
}

impl From<&ExecutionRecord> for LastRun {
    fn from(record: &ExecutionRecord) -> Self {
        Self {
            status: record.status.as_str().to_owned(),
            start_time: record.start_time,
            end_time: record.end_time,
        }
    }
}

/// The upsert every write goes through: a row only ever moves to a newer record.
const UPSERT: &str = "
    INSERT INTO last_runs (job_name, run_id, status, start_time, end_time)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
    ON CONFLICT (job_name) DO UPDATE
    SET run_id = excluded.run_id, status = excluded.status,
        start_time = excluded.start_time, end_time = excluded.end_time
    WHERE excluded.run_id IS NOT NULL
      AND (last_runs.run_id IS NULL
           OR (excluded.start_time, excluded.run_id) > (last_runs.start_time, last_runs.run_id))";

/// Stores `records` as their jobs' last runs where they are newer than what is stored.
pub async fn record(
    tx: &mut Transaction<'static, Postgres>,
    records: &[&ExecutionRecord],
) -> Result<(), sqlx::Error> {
    let mut newest: HashMap<&str, &ExecutionRecord> = HashMap::new();
    for record in records {
        let slot = newest.entry(record.job_name.as_str()).or_insert(record);
        if (record.start_time, &record.run_id) > (slot.start_time, &slot.run_id) {
            *slot = record;
        }
    }
    let rows: Vec<(&str, Option<&ExecutionRecord>)> =
        newest.into_iter().map(|(job, r)| (job, Some(r))).collect();
    upsert(&mut **tx, &rows).await
}

/// The start time of the newest record any job's row holds, Unix ms; `None` before any.
pub async fn newest(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(start_time) FROM last_runs")
        .fetch_one(pool)
        .await
}

/// Gives up to [`FILL_BATCH`] jobs without a row one, from their newest record in MongoDB
/// (or none), and drops the rows of deleted jobs. Returns how many jobs it filled.
pub async fn fill(pool: &PgPool, log: &Collection<RawDocumentBuf>) -> Result<usize, ReadError> {
    sqlx::query(
        "DELETE FROM last_runs l WHERE NOT EXISTS
           (SELECT 1 FROM jobs j WHERE j.name = l.job_name AND NOT j.deleted)",
    )
    .execute(pool)
    .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM jobs j WHERE NOT deleted
           AND NOT EXISTS (SELECT 1 FROM last_runs l WHERE l.job_name = j.name)
         ORDER BY name LIMIT $1",
    )
    .bind(FILL_BATCH as i64)
    .fetch_all(pool)
    .await?;
    let found: Vec<Result<(String, Option<ExecutionRecord>), ReadError>> =
        futures_util::stream::iter(names)
            .map(|name| async move {
                let newest = newest_in_log(log, &name).await?;
                Ok((name, newest.map(|run| run.record)))
            })
            .buffer_unordered(FILL_CONCURRENCY)
            .collect()
            .await;
    let found = found.into_iter().collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<(&str, Option<&ExecutionRecord>)> = found
        .iter()
        .map(|(name, record)| (name.as_str(), record.as_ref()))
        .collect();
    upsert(pool, &rows).await?;
    Ok(rows.len())
}

async fn upsert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &[(&str, Option<&ExecutionRecord>)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let jobs: Vec<&str> = rows.iter().map(|(job, _)| *job).collect();
    let field = |f: fn(&ExecutionRecord) -> String| -> Vec<Option<String>> {
        rows.iter().map(|(_, r)| r.map(f)).collect()
    };
    let time = |f: fn(&ExecutionRecord) -> i64| -> Vec<Option<i64>> {
        rows.iter().map(|(_, r)| r.map(f)).collect()
    };
    sqlx::query(UPSERT)
        .bind(&jobs)
        .bind(field(|r| r.run_id.clone()))
        .bind(field(|r| r.status.as_str().to_owned()))
        .bind(time(|r| r.start_time))
        .bind(time(|r| r.end_time))
        .execute(executor)
        .await?;
    Ok(())
}

/// A job's newest record in MongoDB: one indexed `(jobName, startTime desc)` lookup.
async fn newest_in_log(
    log: &Collection<RawDocumentBuf>,
    name: &str,
) -> Result<Option<Run>, ReadError> {
    let found = log
        .find_one(doc! { "jobName": name })
        .sort(doc! { "startTime": -1 })
        .projection(doc! { "output": 0 })
        .await?;
    Ok(found.as_ref().and_then(Run::decode))
}

/// The newest record of each named job that has one: one PostgreSQL query for the page, and
/// a MongoDB lookup, all at once, for each job the notifier has not filled yet.
pub async fn of(
    pool: &PgPool,
    log: &Collection<RawDocumentBuf>,
    names: &[String],
) -> Result<HashMap<String, LastRun>, ReadError> {
    let rows = sqlx::query(
        "SELECT job_name, status, start_time, end_time FROM last_runs WHERE job_name = ANY($1)",
    )
    .bind(names)
    .fetch_all(pool)
    .await?;
    let mut last = HashMap::new();
    let mut known = std::collections::HashSet::new();
    for row in rows {
        let job: String = row.try_get("job_name")?;
        let status: Option<String> = row.try_get("status")?;
        let start: Option<i64> = row.try_get("start_time")?;
        let end: Option<i64> = row.try_get("end_time")?;
        if let (Some(status), Some(start_time), Some(end_time)) = (status, start, end) {
            last.insert(
                job.clone(),
                LastRun {
                    status,
                    start_time,
                    end_time,
                },
            );
        }
        known.insert(job);
    }
    let lookups = names
        .iter()
        .filter(|name| !known.contains(*name))
        .map(|name| newest_in_log(log, name));
    let found = futures_util::future::try_join_all(lookups).await?;
    for run in found.iter().flatten() {
        last.insert(run.record.job_name.clone(), LastRun::from(&run.record));
    }
    Ok(last)
}
