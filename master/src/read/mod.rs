//! The read side the API and the pages share: execution records (MongoDB), runs in progress and
//! worker registrations (etcd), and the audit log (PostgreSQL, through the [`Store`]). One
//! query each; a failure comes back as a [`ReadError`], which the HTTP layer logs once and
//! answers 503.

pub mod indexes;
pub mod last_runs;
mod running;
pub mod search;
pub mod stats;
mod stored;

use std::collections::HashMap;

use cronfleet_common::values::Registration;
use cronfleet_common::{JobName, Keys};
use etcd_client::GetOptions;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};

use crate::store::{AuditRow, EventFilter, Store, StoreError};
pub use last_runs::LastRun;
pub use running::Running;
pub use search::RunFilter;
pub use stored::Run;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReadError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

/// Where a page of execution records starts: after this `(startTime, runId)`, newest first.
/// Among records of one start time, cronfleet's (by run id, descending) come before
/// go-crontab's (which have no run id; by `_id`, descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub start_time: i64,
    pub run_id: String,
}

impl RunCursor {
    /// The cursor after `run`.
    pub fn after(run: &Run) -> Self {
        Self {
            start_time: run.record.start_time,
            run_id: run.record.run_id.clone(),
        }
    }

    /// `<startTime>_<runId>`, as [`RunCursor::to_text`] writes it.
    pub fn parse(text: &str) -> Option<Self> {
        let (start, run) = text.split_once('_')?;
        Some(Self {
            start_time: start.parse().ok()?,
            run_id: run.to_owned(),
        })
    }

    pub fn to_text(&self) -> String {
        format!("{}_{}", self.start_time, self.run_id)
    }

    /// The fields, beside a start time equal to the cursor's, of the records of that start
    /// time that come after it in [`Reads::runs`]' order: each a query of its own.
    fn ties(&self) -> Vec<Document> {
        match stored::legacy_id(&self.run_id) {
            Some(id) => vec![doc! { "runId": Bson::Null, "_id": { "$lt": id } }],
            None => vec![
                doc! { "runId": { "$lt": &self.run_id } },
                doc! { "runId": Bson::Null },
            ],
        }
    }
}

/// A page of execution records, and where the next one starts (if there is one).
#[derive(Debug)]
pub struct RunPage {
    pub runs: Vec<Run>,
    pub next: Option<RunCursor>,
}

/// The end of a running run's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOutput {
    pub tail: String,
    /// When its worker sent it, Unix ms.
    pub updated_at_ms: i64,
}

/// The live workers.
#[derive(Debug, Default)]
pub struct Fleet {
    pub workers: Vec<Registration>,
    pub legacy: Vec<LegacyWorker>,
}

/// A go-crontab worker: it registers its IPv4 address with an empty value, and ignores
/// pause, run-now, timeouts and env.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LegacyWorker {
    /// The address it registered under `workers/`.
    pub address: String,
}

#[derive(Clone)]
pub struct Reads {
    pub store: Store,
    pub log: mongodb::Collection<RawDocumentBuf>,
    pub etcd: etcd_client::Client,
    pub keys: Keys,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Reads {
    /// A page of a job's records, newest first: at most `limit`, after `cursor`.
    pub async fn executions(
        &self,
        job: &JobName,
        cursor: Option<&RunCursor>,
        limit: usize,
    ) -> Result<RunPage, ReadError> {
        let filter = RunFilter {
            job: Some(job.clone()),
            ..RunFilter::default()
        };
        self.runs(&filter, cursor, limit).await
    }

    /// A page of the records `filter` matches, newest first: at most `limit`, after `cursor`.
    /// Documents that cannot be read, or whose status read from `err` (go-crontab's) is not
    /// one asked for, are left out but still count towards the page, so a page may be short
    /// and still have a next one.
    pub async fn runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&RunCursor>,
        limit: usize,
    ) -> Result<RunPage, ReadError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let newest = last_runs::newest(&self.store.pool).await?;
        let newest_ms = newest.map_or(now_ms, |newest| newest.min(now_ms));
        let mut documents: Vec<RawDocumentBuf> = Vec::new();
        for slice in filter.slices(cursor, newest_ms) {
            let wanted = limit + 1 - documents.len();
            let mut found: Vec<RawDocumentBuf> = Vec::new();
            for part in filter.parts(cursor, slice) {
                let read: Vec<RawDocumentBuf> = self
                    .log
                    .find(part)
                    .sort(doc! { "startTime": -1, "runId": -1, "_id": -1 })
                    .limit(i64::try_from(wanted).unwrap_or(i64::MAX))
                    .await?
                    .try_collect()
                    .await?;
                found.extend(read);
            }
            found.sort_by(|a, b| stored::order(b).cmp(&stored::order(a)));
            found.truncate(wanted);
            documents.extend(found);
            if documents.len() > limit {
                break;
            }
        }
        let more = documents.len() > limit;
        documents.truncate(limit);
        let next = documents
            .iter()
            .rev()
            .find_map(Run::decode)
            .filter(|_| more)
            .map(|last| RunCursor::after(&last));
        let runs: Vec<Run> = documents
            .iter()
            .filter_map(Run::decode)
            .filter(|run| filter.status_matches(run.record.status))
            .collect();
        Ok(RunPage { runs, next })
    }

    /// One run's record; a go-crontab record by the `_id` its run id names.
    pub async fn execution(&self, run_id: &str) -> Result<Option<Run>, ReadError> {
        let filter = match stored::legacy_id(run_id) {
            Some(id) => doc! { "_id": id, "runId": Bson::Null },
            None => doc! { "runId": run_id },
        };
        let found = self.log.find_one(filter).await?;
        Ok(found.as_ref().and_then(Run::decode))
    }

    /// The records of one tick of a job (its retry attempts, or each worker's run of it), in
    /// the order they started: at most `limit`, from `since` (the tick's planned time, before
    /// which none of them started) on, so the `(jobName, startTime)` index bounds the scan.
    pub async fn tick_runs(
        &self,
        job: &str,
        tick_id: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<Run>, ReadError> {
        let filter = doc! { "jobName": job, "startTime": { "$gte": since }, "tickId": tick_id };
        let documents: Vec<RawDocumentBuf> = self
            .log
            .find(filter)
            .sort(doc! { "startTime": 1, "runId": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(documents.iter().filter_map(Run::decode).collect())
    }

    /// The newest record of each named job that has one (see [`last_runs`]).
    pub async fn last_runs(&self, names: &[String]) -> Result<HashMap<String, LastRun>, ReadError> {
        last_runs::of(&self.store.pool, &self.log, names).await
    }

    /// How long each of the job's last `limit` records that started a process ran, oldest
    /// first, in ms.
    pub async fn recent_durations(
        &self,
        job: &JobName,
        limit: usize,
    ) -> Result<Vec<i64>, ReadError> {
        let filter = RunFilter {
            job: Some(job.clone()),
            statuses: stats::RAN.to_vec(),
            ..RunFilter::default()
        };
        let page = self.runs(&filter, None, limit).await?;
        Ok(page
            .runs
            .iter()
            .rev()
            .map(|run| (run.record.end_time - run.record.start_time).max(0))
            .collect())
    }

    /// A job's run statistics as of `now`, its days in `tz` (see [`stats`]).
    pub async fn job_stats(
        &self,
        job: &JobName,
        now: chrono::DateTime<chrono::Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<stats::JobStats, ReadError> {
        Ok(stats::job(&self.store.pool, job.as_str(), now, tz).await?)
    }

    /// The fleet's runs over the last hour and day (see [`stats`]).
    pub async fn fleet_overview(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<stats::FleetOverview, ReadError> {
        Ok(stats::fleet(&self.store.pool, now).await?)
    }

    /// The end of a run's output while it is in progress, as its worker last sent it (every
    /// 2 s at most, from 2 s into the run on), and when.
    pub async fn live_output(&self, run_id: &str) -> Result<Option<LiveOutput>, ReadError> {
        let live = self
            .log
            .client()
            .database(&self.log.namespace().db)
            .collection::<Document>("live");
        let found = live.find_one(doc! { "_id": run_id }).await?;
        Ok(found.map(|doc| LiveOutput {
            tail: doc.get_str("tail").unwrap_or_default().to_owned(),
            updated_at_ms: doc
                .get_datetime("updatedAt")
                .map_or(0, |at| at.timestamp_millis()),
        }))
    }

    /// Every run in progress (see [`running`]).
    pub async fn running(&self) -> Result<Vec<Running>, ReadError> {
        running::all(&self.etcd, &self.keys).await
    }

    /// How many runs are in progress per job.
    pub async fn running_counts(&self) -> Result<HashMap<String, usize>, ReadError> {
        let mut counts = HashMap::new();
        for run in self.running().await? {
            *counts.entry(run.job).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Every live worker: cronfleet's registrations, by id, and the go-crontab workers (which
    /// register `workers/<IPv4>` with an empty value), by address.
    pub async fn workers(&self) -> Result<Fleet, ReadError> {
        let mut etcd = self.etcd.clone();
        let found = etcd
            .get(self.keys.workers(), Some(GetOptions::new().with_prefix()))
            .await?;
        let prefix = self.keys.workers();
        let mut fleet = Fleet::default();
        for kv in found.kvs() {
            if kv.value().iter().all(u8::is_ascii_whitespace) {
                fleet.legacy.extend(
                    std::str::from_utf8(kv.key())
                        .ok()
                        .and_then(|key| key.strip_prefix(&prefix))
                        .map(|address| LegacyWorker {
                            address: address.to_owned(),
                        }),
                );
            } else if let Ok(registration) = serde_json::from_slice(kv.value()) {
                fleet.workers.push(registration);
            }
        }
        Ok(fleet)
    }

    /// The audit log, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<AuditRow>, ReadError> {
        Ok(self.store.events(filter).await?)
    }
}
