//! The read side the API and the pages share: execution records (MongoDB), runs in progress and
//! worker registrations (etcd), and the audit log (PostgreSQL, through the [`Store`]). One
//! query each; a failure comes back as a [`ReadError`], which the HTTP layer logs once and
//! answers 503.

use std::collections::{BTreeSet, HashMap};

use cronfleet_common::values::{Holder, Registration};
use cronfleet_common::{ExecutionRecord, JobName, Keys};
use etcd_client::GetOptions;
use futures_util::TryStreamExt;
use mongodb::bson::doc;

use crate::store::{AuditRow, EventFilter, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a page of execution records starts: after this `(startTime, runId)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub start_time: i64,
    pub run_id: String,
}

impl RunCursor {
    /// The cursor after `record`.
    pub fn after(record: &ExecutionRecord) -> Self {
        Self {
            start_time: record.start_time,
            run_id: record.run_id.clone(),
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
}

#[derive(Clone)]
pub struct Reads {
    pub store: Store,
    pub log: mongodb::Collection<ExecutionRecord>,
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
    /// A job's records, newest first, at most `limit`, after `cursor`.
    pub async fn executions(
        &self,
        job: &JobName,
        cursor: Option<&RunCursor>,
        limit: i64,
    ) -> Result<Vec<ExecutionRecord>, ReadError> {
        let mut filter = doc! { "jobName": job.as_str() };
        if let Some(cursor) = cursor {
            filter.insert(
                "$or",
                vec![
                    doc! { "startTime": { "$lt": cursor.start_time } },
                    doc! { "startTime": cursor.start_time, "runId": { "$lt": &cursor.run_id } },
                ],
            );
        }
        let records = self
            .log
            .find(filter)
            .sort(doc! { "startTime": -1, "runId": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(records)
    }

    /// One run's record.
    pub async fn execution(&self, run_id: &str) -> Result<Option<ExecutionRecord>, ReadError> {
        Ok(self.log.find_one(doc! { "runId": run_id }).await?)
    }

    /// The newest record of each named job: one indexed `(jobName, startTime desc)` lookup per
    /// job, all at once (an aggregation over the whole collection is far slower).
    pub async fn last_runs(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, ExecutionRecord>, ReadError> {
        let lookups = names.iter().map(|name| async move {
            self.log
                .find_one(doc! { "jobName": name.as_str() })
                .sort(doc! { "startTime": -1 })
                .await
        });
        let found = futures_util::future::try_join_all(lookups).await?;
        Ok(found
            .into_iter()
            .flatten()
            .map(|record| (record.job_name.clone(), record))
            .collect())
    }

    /// Runs in progress per job, from the workers' keys: a `forbid` run holds `lock/<job>`,
    /// runs that may overlap also have `runs/<job>/<run>`. A run is counted once by its run id;
    /// a lock without one (held by a go-crontab worker) counts as one run.
    pub async fn running_counts(&self) -> Result<HashMap<String, usize>, ReadError> {
        let mut etcd = self.etcd.clone();
        let runs = etcd
            .get(
                self.keys.runs(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        let locks = etcd
            .get(self.keys.locks(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut running: BTreeSet<(String, String)> = BTreeSet::new();
        for kv in runs.kvs() {
            if let Some((job, run_id)) = self.keys.run_of(kv.key()) {
                running.insert((job.to_string(), run_id));
            }
        }
        for kv in locks.kvs() {
            if let Some(job) = self.keys.job_of(kv.key()) {
                let run_id = serde_json::from_slice::<Holder>(kv.value()).map_or_else(
                    |_| String::from_utf8_lossy(kv.key()).into_owned(),
                    |h| h.run_id,
                );
                running.insert((job.to_string(), run_id));
            }
        }
        let mut counts = HashMap::new();
        for (job, _) in running {
            *counts.entry(job).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Every live worker's registration, by id. Values that are not a registration (a
    /// go-crontab worker registers an empty one) are left out.
    pub async fn workers(&self) -> Result<Vec<Registration>, ReadError> {
        let mut etcd = self.etcd.clone();
        let found = etcd
            .get(self.keys.workers(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(found
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect())
    }

    /// The audit log, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<AuditRow>, ReadError> {
        Ok(self.store.events(filter).await?)
    }
}
