//! Retention: deletes execution records older than their job keeps them, or beyond the newest
//! so many. Run by the elected notifier (one master at a time): a pass every
//! [`RetentionArgs::retention_every_secs`] while it leads, the first one period after it is
//! elected.
//!
//! A pass reads the live jobs from the read model and deletes, each by a plain query the
//! `(jobName, startTime)` and `startTime` indexes bound:
//! - by age, one query for every record of a job without days of its own (and of jobs no
//!   longer live) older than the fleet's default, then one per job with days of its own;
//! - by count, per job with a maximum (its own or the default's): everything past its newest
//!   that many, but never a record younger than the notifier's lookback, which it may not have
//!   acted on yet.
//!
//! Deleting by query rather than by an expiry stamped on each record at insert means a changed
//! default or job applies to the records already kept, at the next pass, and workers need not
//! know the master's settings.

use std::time::Duration;

use clap::Args;
use cronfleet_common::Retention;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawBsonRef, RawDocumentBuf};
use mongodb::Collection;

use crate::store::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// Why a pass stopped; the next pass tries again.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mongo: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

/// The fleet's default retention and how often it is enforced.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Days an execution record is kept unless its job says otherwise; 0 keeps records
    /// forever.
    #[arg(long, env = "CRON_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(0..=36_500), global = true)]
    pub retention_days: u32,

    /// The most records kept per job unless its job says otherwise (the newest); 0 for no
    /// limit.
    #[arg(long, env = "CRON_RETENTION_MAX_RECORDS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000_000), global = true)]
    pub retention_max_records: u32,

    /// Seconds between two passes of the pruner.
    #[arg(long, env = "CRON_RETENTION_EVERY_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub retention_every_secs: u64,
}

impl RetentionArgs {
    /// The fleet's default, as a job's retention is read over it.
    pub fn default_retention(&self) -> Retention {
        Retention {
            days: (self.retention_days > 0).then_some(self.retention_days),
            max_records: (self.retention_max_records > 0).then_some(self.retention_max_records),
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub by_age: u64,
    pub by_count: u64,
}

/// The pruner of the elected notifier.
#[derive(Debug, Clone)]
pub struct Pruner {
    pub store: Store,
    pub log: Collection<RawDocumentBuf>,
    pub default: Retention,
    pub every: Duration,
    /// Records that started less than this long ago are never deleted by count.
    pub settle_ms: i64,
}

impl Pruner {
    /// Passes every [`Pruner::every`], logging what each deleted; a failed pass is logged and
    /// the next one tries again.
    pub async fn run(&self) {
        loop {
            // A pass a period after election, not at once: a master that starts (or a
            // notifier that takes over) first catches up on records, then deletes.
            tokio::time::sleep(self.every).await;
            let now_ms = chrono::Utc::now().timestamp_millis();
            match self.prune(now_ms).await {
                Ok(pruned) if pruned != Pruned::default() => tracing::info!(
                    by_age = pruned.by_age,
                    by_count = pruned.by_count,
                    "retention: deleted execution records"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again later"),
            }
        }
    }

    /// One pass as of `now_ms`.
    pub async fn prune(&self, now_ms: i64) -> Result<Pruned, PruneError> {
        let jobs = self.store.live_jobs().await?;
        let mut pruned = Pruned::default();
        let own_days: Vec<&str> = jobs
            .iter()
            .filter(|(_, job)| job.spec.retention.days.is_some())
            .map(|(name, _)| name.as_str())
            .collect();
        if let Some(days) = self.default.days {
            let mut filter = doc! { "startTime": { "$lt": before(now_ms, days) } };
            if !own_days.is_empty() {
                filter.insert("jobName", doc! { "$nin": &own_days });
            }
            pruned.by_age += self.delete(filter).await?;
        }
        for (name, job) in &jobs {
            if let Some(days) = job.spec.retention.days {
                let filter = doc! { "jobName": name, "startTime": { "$lt": before(now_ms, days) } };
                pruned.by_age += self.delete(filter).await?;
            }
        }
        let settled = now_ms - self.settle_ms;
        for (name, job) in &jobs {
            if let Some(keep) = job.spec.retention.over(self.default).max_records {
                pruned.by_count += self.keep_newest(name, keep, settled).await?;
            }
        }
        Ok(pruned)
    }

    /// Deletes a job's records past its newest `keep`, of those that started before `settled`.
    async fn keep_newest(&self, job: &str, keep: u32, settled: i64) -> Result<u64, PruneError> {
        let first_past: Option<RawDocumentBuf> = self
            .log
            .find(doc! { "jobName": job })
            .sort(doc! { "startTime": -1, "runId": -1 })
            .skip(u64::from(keep))
            .limit(1)
            .await?
            .try_next()
            .await?;
        let Some(first_past) = first_past else {
            return Ok(0);
        };
        let Some(start) = start_time(&first_past) else {
            return Ok(0);
        };
        let mut deleted = self
            .delete(doc! { "jobName": job, "startTime": { "$lt": start.min(settled) } })
            .await?;
        if start < settled {
            // Of the records of the same start time, those from it on in the list's order:
            // cronfleet's by run id, then go-crontab's (no run id) by `_id`.
            let mut ties = vec![doc! { "runId": Bson::Null }];
            if let Ok(run_id) = first_past.get_str("runId") {
                ties.push(doc! { "runId": { "$lte": run_id } });
            } else if let Ok(id) = first_past.get_object_id("_id") {
                ties[0].insert("_id", doc! { "$lte": id });
            }
            for tie in ties {
                let mut filter = doc! { "jobName": job, "startTime": start };
                filter.extend(tie);
                deleted += self.delete(filter).await?;
            }
        }
        Ok(deleted)
    }

    async fn delete(&self, filter: Document) -> Result<u64, PruneError> {
        Ok(self.log.delete_many(filter).await?.deleted_count)
    }
}

/// A record's start time, however its writer stored the number.
fn start_time(record: &RawDocumentBuf) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation)]
    match record.get("startTime").ok().flatten()? {
        RawBsonRef::Int64(n) => Some(n),
        RawBsonRef::Int32(n) => Some(i64::from(n)),
        RawBsonRef::Double(n) if n.is_finite() => Some(n as i64),
        _ => None,
    }
}

/// `days` before `now_ms`, in ms.
fn before(now_ms: i64, days: u32) -> i64 {
    now_ms - i64::from(days) * DAY_MS
}
