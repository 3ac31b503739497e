//! The indexes the master's reads of `log` need beyond the workers' (`runId` unique where set,
//! `(jobName, startTime desc)`), created by the notifier when it starts leading.
//!
//! The list of runs across jobs reads newest first by `startTime`, in slices of it (see
//! [`super::search`]), whatever else it filters on, and by `requestId` (the runs a run-now
//! started). There is no index by status: the MongoDB-wire server would choose it for a
//! status filter and read every record of those statuses, where the slice of `startTime`
//! reads only the records of the slice.
//!
//! Both exist because a server may not use the index a read would seem to have: the
//! MongoDB-wire server this project runs scans the whole collection for an `_id` range (the
//! notifier's forward read) and ignores a partial index for a lookup by run id (an execution's
//! page, a notification's output). A compound index led by the same field serves both on
//! every server; on MongoDB itself they cost an index entry per record and nothing else.

use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

/// Creates the indexes if they are missing (a no-op when they exist).
pub async fn ensure(log: &Collection<RawDocumentBuf>) -> mongodb::error::Result<()> {
    let index = |keys, name: &str| {
        IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().name(name.to_owned()).build())
            .build()
    };
    log.create_indexes([
        index(doc! { "_id": 1, "jobName": 1 }, "id_jobName"),
        index(doc! { "runId": 1, "startTime": 1 }, "runId_startTime"),
        index(
            doc! { "startTime": -1, "runId": -1, "_id": -1 },
            "startTime_runId_id",
        ),
        index(doc! { "requestId": 1 }, "requestId"),
    ])
    .await?;
    Ok(())
}
