//! Uploading the spool: sealed segments go to Mongo `log` in batches (`insert_many`,
//! unordered), oldest first, with backoff while Mongo is unreachable; a segment is deleted only
//! once Mongo has every record of it. Sealed segments wait for a pause in the worker's run
//! starts ([`Starts`]), at most [`MAX_YIELD`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cronfleet_common::ExecutionRecord;
use mongodb::bson::doc;
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::spool::Spool;
use crate::starts::Starts;

/// Duplicate key: the record is already in Mongo.
const DUPLICATE_KEY: i32 = 11000;

/// Uploads sealed segments to Mongo, oldest first, with backoff while Mongo is unreachable.
#[derive(Debug, Clone)]
pub struct Uploader {
    pub dir: PathBuf,
    pub log: Collection<ExecutionRecord>,
    pub sealed: Arc<Notify>,
    /// Whether the last upload attempt reached Mongo.
    pub reachable: Arc<AtomicBool>,
    /// The worker's run starts, which sealed segments wait for a pause in.
    pub starts: Arc<Starts>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long the worker must have started nothing before sealed segments go out: longer than
/// the gaps between starts within a burst, whose runs end and free slots for the next ones.
const QUIET_GAP: Duration = Duration::from_millis(150);

/// The longest sealed segments wait for that pause, so that records reach MongoDB within
/// seconds however steady the starts.
const MAX_YIELD: Duration = Duration::from_secs(2);

impl Uploader {
    /// Uploads until `shutdown`; the caller then runs [`Uploader::drain`] once the sink is done.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut indexed = false;
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = self.upload_all(&mut indexed).await;
            self.reachable.store(result.is_ok(), Ordering::Relaxed);
            match result {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    tokio::select! {
                        () = self.sealed.notified() => {}
                        () = shutdown.cancelled() => return,
                    }
                    tokio::select! {
                        () = self.starts.quiet(QUIET_GAP, MAX_YIELD) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "execution records wait in the spool: Mongo upload failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One last upload of everything sealed, giving up after `within`; what is left is flushed
    /// to the disk and uploaded by the next start. Skipped when Mongo was unreachable at the
    /// last attempt, so a worker stops promptly during an outage.
    pub async fn drain(&self, within: Duration) {
        if self.reachable.load(Ordering::Relaxed) {
            let mut indexed = false;
            match tokio::time::timeout(within, self.upload_all(&mut indexed)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "Mongo upload failed at shutdown"),
                Err(_) => tracing::warn!("Mongo too slow at shutdown"),
            }
        }
        let left = Spool::sealed(&self.dir).unwrap_or_default();
        match Spool::persist(&self.dir, &left) {
            Ok(()) => tracing::warn!(
                segments = left.len(),
                "records stay in the spool until the next start"
            ),
            Err(e) => tracing::error!(error = %e, "could not flush the spool to the disk"),
        }
    }

    /// Uploads every sealed segment; on failure, flushes the ones left to the disk.
    async fn upload_all(&self, indexed: &mut bool) -> anyhow::Result<()> {
        let segments = Spool::sealed(&self.dir)?;
        let result = self.upload(&segments, indexed).await;
        if result.is_err() {
            Spool::persist(&self.dir, &segments)?;
        }
        result
    }

    async fn upload(&self, segments: &[PathBuf], indexed: &mut bool) -> anyhow::Result<()> {
        if !*indexed {
            ensure_indexes(&self.log).await?;
            *indexed = true;
        }
        for segment in segments {
            let records = match Spool::read(segment) {
                Ok(records) => records,
                // Another worker sharing the directory uploaded it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if !records.is_empty() {
                insert_idempotent(&self.log, &records).await?;
            }
            match std::fs::remove_file(segment) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The unique index on `runId`, over the documents that have one: go-crontab's records, which
/// share `cron.log` in a mixed fleet, have none, and must keep going in.
const RUN_ID_INDEX: &str = "runId_unique_where_set";

/// The index of that name that covered every document, which go-crontab's records break.
const OLD_RUN_ID_INDEX: &str = "runId_unique";

/// Creates the unique `runId` index (only over records that have a `runId`) and the
/// `(jobName, startTime desc)` index, and retires the older `runId` index that covered every
/// document. The new index is built before the old one is dropped, so a retried upload never
/// meets a moment without one; a server that refuses two indexes on one key pattern gets the
/// old one dropped first.
pub async fn ensure_indexes(log: &Collection<ExecutionRecord>) -> mongodb::error::Result<()> {
    let run_id = IndexModel::builder()
        .keys(doc! { "runId": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .partial_filter_expression(doc! { "runId": { "$type": "string" } })
                .name(RUN_ID_INDEX.to_owned())
                .build(),
        )
        .build();
    let by_job = IndexModel::builder()
        .keys(doc! { "jobName": 1, "startTime": -1 })
        .options(
            IndexOptions::builder()
                .name("jobName_startTime".to_owned())
                .build(),
        )
        .build();
    let old = match log.list_index_names().await {
        Ok(names) => names.iter().any(|name| name == OLD_RUN_ID_INDEX),
        // No collection yet (NamespaceNotFound): nothing to retire.
        Err(e) if command_code(&e) == Some(26) => false,
        Err(e) => return Err(e),
    };
    match log.create_indexes([run_id.clone(), by_job.clone()]).await {
        Ok(_) => {}
        Err(e) if old && is_index_conflict(&e) => {
            log.drop_index(OLD_RUN_ID_INDEX).await?;
            log.create_indexes([run_id, by_job]).await?;
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    if old {
        log.drop_index(OLD_RUN_ID_INDEX).await?;
        tracing::info!(
            "replaced the runId index with one over records that have a runId, so go-crontab's \
             records fit beside cronfleet's"
        );
    }
    Ok(())
}

/// MongoDB's answer to a second index on the same key pattern (IndexOptionsConflict,
/// IndexKeySpecsConflict).
fn is_index_conflict(error: &mongodb::error::Error) -> bool {
    matches!(command_code(error), Some(85 | 86))
}

fn command_code(error: &mongodb::error::Error) -> Option<i32> {
    match *error.kind {
        ErrorKind::Command(ref command) => Some(command.code),
        _ => None,
    }
}

/// `insert_many`, unordered; records already present (duplicate `runId`) count as inserted.
pub async fn insert_idempotent(
    log: &Collection<ExecutionRecord>,
    records: &[ExecutionRecord],
) -> mongodb::error::Result<()> {
    match log.insert_many(records).ordered(false).await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind.as_ref() {
            ErrorKind::InsertMany(failure)
                if failure.write_concern_error.is_none()
                    && failure
                        .write_errors
                        .as_ref()
                        .is_some_and(|errors| errors.iter().all(|w| w.code == DUPLICATE_KEY)) =>
            {
                Ok(())
            }
            _ => Err(e),
        },
    }
}
