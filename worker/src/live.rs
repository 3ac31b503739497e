//! Live output: the end of a long run's output while it is in progress, in MongoDB's `live`
//! collection — one small document per run, `_id` the run id — so its page can follow it.
//!
//! A run sends nothing for its first [`EVERY`] (most runs are over by then), then the last
//! [`TAIL_BYTES`] of its output at most once per [`EVERY`], and only when it grew. Sends never
//! wait: they go to a bounded queue and are dropped when it is full. One task per worker
//! writes what is queued, the newest per run, and deletes a run's document when it ends;
//! `expireAt`, under a TTL index, removes the document of a run whose worker died. Nothing here
//! touches claims, runs or records: a slow or absent MongoDB costs live output, nothing else.
//! At 100 runs printing at once that is at most 50 small upserts a second.

use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::{doc, DateTime as BsonDateTime, Document};
use mongodb::options::{IndexOptions, ReplaceOptions};
use mongodb::{Collection, IndexModel};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::output::Output;

/// The collection live output goes to, beside the records' `log`.
pub const COLLECTION: &str = "live";
/// How often a run's output is sent at most, and how long a run goes before its first send.
pub const EVERY: Duration = Duration::from_secs(2);
/// How much of the end of the output is sent.
pub const TAIL_BYTES: usize = 8 * 1024;
/// Updates waiting to be written; more are dropped.
const QUEUE: usize = 1024;
/// How long a document outlives its last update if nobody deletes it.
const KEEP: Duration = Duration::from_secs(600);

enum Update {
    Tail {
        run_id: String,
        job: String,
        text: String,
    },
    Ended(String),
}

/// Where runs send their output; cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: mpsc::Sender<Update>,
}

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tail { run_id, .. } => write!(f, "Tail({run_id})"),
            Self::Ended(run_id) => write!(f, "Ended({run_id})"),
        }
    }
}

impl Feed {
    /// Starts the writer; it ends when every clone of the feed is gone.
    pub fn spawn(live: Collection<Document>, worker_id: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(live, worker_id, rx));
        Self { tx }
    }

    /// What one run sends through.
    pub fn publisher(&self, run_id: &str, job: &str) -> Publisher {
        Publisher {
            feed: self.clone(),
            run_id: run_id.to_owned(),
            job: job.to_owned(),
            next: Instant::now() + EVERY,
            sent_bytes: 0,
        }
    }
}

/// One run's sender: decides when its output is worth sending.
#[derive(Debug)]
pub struct Publisher {
    feed: Feed,
    run_id: String,
    job: String,
    next: Instant,
    /// The output's length at the last send; 0 before the first.
    sent_bytes: u64,
}

impl Publisher {
    /// Sends the end of `output` if it is time and it grew since the last send.
    pub fn offer(&mut self, output: &Output) {
        let now = Instant::now();
        if now < self.next || output.total_bytes() == self.sent_bytes {
            return;
        }
        self.next = now + EVERY;
        let update = Update::Tail {
            run_id: self.run_id.clone(),
            job: self.job.clone(),
            text: output.end(TAIL_BYTES),
        };
        if self.feed.tx.try_send(update).is_ok() {
            self.sent_bytes = output.total_bytes();
        }
    }

    /// The run ended: its document, if it has one, goes.
    pub fn ended(self) {
        if self.sent_bytes > 0 {
            let _ = self.feed.tx.try_send(Update::Ended(self.run_id));
        }
    }
}

async fn write(live: Collection<Document>, worker_id: String, mut rx: mpsc::Receiver<Update>) {
    let ttl = IndexModel::builder()
        .keys(doc! { "expireAt": 1 })
        .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
        .build();
    if let Err(e) = live.create_index(ttl).await {
        tracing::warn!(error = %e, "could not create the TTL index of live output; documents of runs whose worker died stay until deleted");
    }
    while let Some(first) = rx.recv().await {
        // The newest update of each run among those waiting; `None` when it ended.
        let mut pending: HashMap<String, Option<(String, String)>> = HashMap::new();
        let mut take = |update: Update| match update {
            Update::Tail { run_id, job, text } => {
                pending.insert(run_id, Some((job, text)));
            }
            Update::Ended(run_id) => {
                pending.insert(run_id, None);
            }
        };
        take(first);
        while let Ok(update) = rx.try_recv() {
            take(update);
        }
        for (run_id, update) in pending {
            let result = match update {
                Some((job, text)) => {
                    let now = std::time::SystemTime::now();
                    let expire = now + KEEP;
                    let document = doc! {
                        "_id": &run_id, "jobName": job, "workerId": &worker_id, "tail": text,
                        "updatedAt": BsonDateTime::from_system_time(now),
                        "expireAt": BsonDateTime::from_system_time(expire),
                    };
                    live.replace_one(doc! { "_id": &run_id }, document)
                        .with_options(ReplaceOptions::builder().upsert(true).build())
                        .await
                        .map(drop)
                }
                None => live.delete_one(doc! { "_id": &run_id }).await.map(drop),
            };
            if let Err(e) = result {
                tracing::debug!(run.id = %run_id, error = %e, "live output not written");
            }
        }
    }
}
