//! One etcd request for many txns.
//!
//! Under a burst every free slot claims at once and every run releases as it ends. Sent one by
//! one, each txn is a request, a raft entry and an apply of its own, and etcd's cost per
//! request — not the work — bounds how fast a worker starts runs. The batcher sends the txns
//! that are waiting as nested txns of one request: etcd evaluates each nested txn's compares
//! on its own, so they succeed or fail independently, exactly as if sent apart, and every
//! write lands in the one revision of the request (each run's fencing token stays the
//! revision of its own lock). A txn goes out at once while fewer than [`IN_FLIGHT`] requests
//! are out; otherwise it waits and leaves with the others. Two txns on the same job never
//! share a request, since etcd refuses a request that writes one key twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use cronfleet_common::JobName;

use crate::metrics::Metrics;
use etcd_client::{Client, Error, Txn, TxnOp, TxnOpResponse, TxnResponse};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Requests a worker has out at once.
const IN_FLIGHT: usize = 2;

/// Txns in one request; etcd refuses more than 128 operations per branch by default.
const MAX_BATCH: usize = 100;

/// What etcd answered to one txn.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The store's revision after the request: the revision of this txn's writes, if it made
    /// any.
    pub revision: i64,
    pub succeeded: bool,
    pub replies: Vec<TxnOpResponse>,
}

impl Answer {
    fn of(response: &TxnResponse, revision: i64) -> Self {
        Self {
            revision,
            succeeded: response.succeeded(),
            replies: response.op_responses(),
        }
    }
}

struct Request {
    job: JobName,
    txn: Txn,
    answer: oneshot::Sender<Result<Answer, Error>>,
}

/// A handle to the batching task; the task ends when the last handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    pub fn spawn(client: Client, metrics: Arc<Metrics>) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(client, metrics, queue));
        Self { requests }
    }

    /// Sends `txn`, which writes only keys of `job`, with whatever else is waiting.
    pub async fn send(&self, job: &JobName, txn: Txn) -> Result<Answer, Error> {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            job: job.clone(),
            txn,
            answer,
        };
        self.requests
            .send(request)
            .map_err(|_| Error::Internal("the etcd batcher has stopped".to_owned()))?;
        answered
            .await
            .map_err(|_| Error::Internal("the etcd batcher dropped a txn".to_owned()))?
    }
}

async fn run(client: Client, metrics: Arc<Metrics>, mut queue: mpsc::UnboundedReceiver<Request>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    // Txns that found their job already in the request being filled; they lead the next one.
    let mut deferred: VecDeque<Request> = VecDeque::new();
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let first = match deferred.pop_front() {
            Some(request) => request,
            None => match queue.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut jobs = HashSet::from([first.job.clone()]);
        let mut batch = vec![first];
        let mut later = VecDeque::new();
        let mut take = |request: Request, batch: &mut Vec<Request>| {
            if batch.len() < MAX_BATCH && jobs.insert(request.job.clone()) {
                batch.push(request);
            } else {
                later.push_back(request);
            }
        };
        while let Some(request) = deferred.pop_front() {
            take(request, &mut batch);
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => take(request, &mut batch),
                Err(_) => break,
            }
        }
        deferred = later;
        metrics.request_sent();
        tokio::spawn(send(client.clone(), batch, permit));
    }
}

async fn send(mut client: Client, batch: Vec<Request>, _permit: OwnedSemaphorePermit) {
    let (mut txns, mut answers): (Vec<Txn>, Vec<_>) = batch
        .into_iter()
        .map(|request| (request.txn, request.answer))
        .unzip();
    if txns.len() == 1 {
        if let (Some(txn), Some(answer)) = (txns.pop(), answers.pop()) {
            let result = client.txn(txn).await.map(|response| {
                let revision = response.header().map_or(0, |h| h.revision());
                Answer::of(&response, revision)
            });
            let _ = answer.send(result);
        }
        return;
    }
    let outer = Txn::new().and_then(txns.into_iter().map(TxnOp::txn).collect::<Vec<_>>());
    match client.txn(outer).await {
        Ok(response) => {
            let revision = response.header().map_or(0, |h| h.revision());
            let replies = response.op_responses();
            for (answer, reply) in answers.into_iter().zip(replies.iter()) {
                let result = match reply {
                    TxnOpResponse::Txn(nested) => Ok(Answer::of(nested, revision)),
                    _ => Err(Error::Internal(
                        "etcd answered a nested txn oddly".to_owned(),
                    )),
                };
                let _ = answer.send(result);
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(copy(&e)));
            }
        }
    }
}

/// The same failure for every txn of a request.
fn copy(error: &Error) -> Error {
    match error {
        Error::GRpcStatus(status) => Error::GRpcStatus(status.clone()),
        other => Error::Internal(other.to_string()),
    }
}
