//! The log pipeline's first half: records arrive on a bounded channel and go to the disk spool
//! at once; [`crate::upload`] sends sealed segments to Mongo. Scheduling never waits on Mongo:
//! the only thing between a finished run and its record being safe is a local file append.
//!
//! The sink survives every IO error. A record the disk refuses (full, read-only, gone) is kept
//! in memory, in order, and offered again — to the disk, and straight to MongoDB — every
//! second until one of them takes it. While records wait in memory that neither took, the
//! worker holds its claims ([`Hold::RecordsBlocked`]), so the memory they use is bounded by
//! the runs already started; it resumes when either path works again. Nothing is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use cronfleet_common::ExecutionRecord;
use mongodb::Collection;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

use crate::holds::{Hold, Holds};
use crate::spool::Spool;
use crate::upload::insert_idempotent;

/// How often records held in memory are offered to the disk and to MongoDB again.
const RETRY: Duration = Duration::from_secs(1);

/// Reads records off the channel into spool segments of at most `batch_size` records, sealing
/// a segment when it is full or `flush` after its first record. Ends, sealing what it has,
/// when every sender is gone and nothing is held.
#[derive(Debug)]
pub struct LogSink {
    pub spool: Spool,
    pub batch_size: usize,
    pub flush: Duration,
    pub sealed: Arc<Notify>,
    /// Where held records go when the disk will not take them.
    pub log: Collection<ExecutionRecord>,
    pub holds: Holds,
}

impl LogSink {
    pub async fn run(mut self, mut records: mpsc::Receiver<ExecutionRecord>) {
        let mut deadline: Option<Instant> = None;
        let mut held: VecDeque<ExecutionRecord> = VecDeque::new();
        // When held records are next offered to the disk and to MongoDB.
        let mut retry_at: Option<Instant> = None;
        let mut open = true;
        while open || !held.is_empty() {
            tokio::select! {
                record = records.recv(), if open => match record {
                    Some(record) => {
                        held.push_back(record);
                        self.spool_held(&mut held, &mut deadline);
                        if !held.is_empty() && retry_at.is_none() {
                            retry_at = Some(Instant::now());
                        }
                    }
                    None => open = false,
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.seal(&mut deadline);
                }
                () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.spool_held(&mut held, &mut deadline);
                    if !held.is_empty() {
                        self.upload_held(&mut held).await;
                    }
                    if held.is_empty() {
                        retry_at = None;
                        self.holds.set(Hold::RecordsBlocked, false, "every record is safe again");
                    } else {
                        retry_at = Some(Instant::now() + RETRY);
                        self.holds.set(Hold::RecordsBlocked, true, "neither the spool's disk nor MongoDB takes records; they wait in memory");
                    }
                }
            }
        }
        self.seal(&mut deadline);
    }

    /// Appends held records to the spool, oldest first, until the disk refuses one.
    fn spool_held(&mut self, held: &mut VecDeque<ExecutionRecord>, deadline: &mut Option<Instant>) {
        while let Some(record) = held.front() {
            match self.spool.append(record) {
                Ok(count) => {
                    held.pop_front();
                    if count >= self.batch_size {
                        self.seal(deadline);
                    } else if deadline.is_none() {
                        *deadline = Some(Instant::now() + self.flush);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, held = held.len(), "the spool refused a record; keeping it in memory");
                    return;
                }
            }
        }
    }

    /// Sends held records straight to MongoDB, when the disk will not take them.
    async fn upload_held(&mut self, held: &mut VecDeque<ExecutionRecord>) {
        let records: Vec<ExecutionRecord> = held.iter().cloned().collect();
        match insert_idempotent(&self.log, &records).await {
            Ok(()) => {
                tracing::info!(
                    records = records.len(),
                    "records the spool refused went straight to MongoDB"
                );
                held.clear();
            }
            Err(e) => {
                tracing::error!(error = %e, held = held.len(), "neither the spool nor MongoDB takes records; they wait in memory");
            }
        }
    }

    fn seal(&mut self, deadline: &mut Option<Instant>) {
        *deadline = None;
        if !self.spool.has_open() {
            return;
        }
        match self.spool.seal() {
            Ok(()) => self.sealed.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, "could not seal a spool segment; trying again");
                *deadline = Some(Instant::now() + RETRY);
            }
        }
    }
}
