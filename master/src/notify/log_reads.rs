//! The notifier's reads of `log`: the records after an `_id`, in `_id` order, and one run's
//! output. Each is given up after [`READ_TIMEOUT`]: the driver waits for an answer as long as
//! the connection stays open, so a server that never answered one request would stop the
//! notifier for good; given up, the read is tried again at the next poll, on another
//! connection.

use std::future::IntoFuture as _;
use std::time::Duration;

use cronfleet_common::ExecutionRecord;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, RawDocumentBuf};
use mongodb::Collection;

use super::NotifyError;
use crate::read::Run;

/// Records read per query.
const BATCH: i64 = 500;
/// How long one read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch of records with their `_id`s, the last `_id` read, and whether it was full.
pub type Batch = (Vec<(ObjectId, ExecutionRecord)>, Option<ObjectId>, bool);

/// Up to [`BATCH`] records after `after`, without their output; the last `_id` read
/// (decodable or not) and whether the batch was full.
pub async fn batch(
    log: &Collection<RawDocumentBuf>,
    after: ObjectId,
) -> Result<Batch, NotifyError> {
    let find = async {
        log.find(doc! {"_id": {"$gt": after}})
            .sort(doc! {"_id": 1})
            .limit(BATCH)
            .projection(doc! {"output": 0})
            .await?
            .try_collect::<Vec<RawDocumentBuf>>()
            .await
    };
    let found = bounded(find).await??;
    let last = found
        .iter()
        .rev()
        .find_map(|raw| raw.get_object_id("_id").ok());
    let full = found.len() as i64 >= BATCH;
    let records = found
        .iter()
        .filter_map(|raw| {
            let id = raw.get_object_id("_id").ok()?;
            Some((id, Run::decode(raw)?.record))
        })
        .collect();
    Ok((records, last, full))
}

/// The output of run `run_id`, which [`batch`] leaves out.
pub async fn output_of(
    log: &Collection<RawDocumentBuf>,
    run_id: &str,
) -> Result<String, NotifyError> {
    let found = bounded(
        log.find_one(doc! {"runId": run_id})
            .projection(doc! {"output": 1})
            .into_future(),
    )
    .await??;
    Ok(found
        .and_then(|raw| raw.get_str("output").ok().map(str::to_owned))
        .unwrap_or_default())
}

/// `read`, given up after [`READ_TIMEOUT`].
pub async fn bounded<T>(read: impl std::future::Future<Output = T>) -> Result<T, NotifyError> {
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| NotifyError::ReadTimeout(READ_TIMEOUT))
}

/// The second an `_id` was made in.
pub fn secs_of(id: ObjectId) -> i64 {
    id.timestamp().timestamp_millis() / 1000
}

/// An ObjectId below every one made at or after `secs`.
pub fn at_secs(secs: i64) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&u32::try_from(secs.max(0)).unwrap_or(u32::MAX).to_be_bytes());
    ObjectId::from_bytes(bytes)
}
