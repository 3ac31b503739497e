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
//! share a request, since etcd refuses a request that writes one key twice. A request etcd
//! cannot answer (a member died, an election is on) is sent again for a while.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cronfleet_common::JobName;

use crate::metrics::Metrics;
use etcd_client::{Client, Error, Txn, TxnOp, TxnOpResponse, TxnResponse};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::Code;

/// Requests a worker has out at once.
const IN_FLIGHT: usize = 2;

/// Txns in one request; etcd refuses more than 128 operations per branch by default.
const MAX_BATCH: usize = 100;

/// How long a request is sent again while etcd cannot answer: longer than an election.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// How long one sending may wait for its answer. A request that reached a member just as its
/// leader died waits for the server's own timeout (5 s or more) unless given up sooner; a
/// healthy etcd answers in milliseconds, and in well under a second even under a burst.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

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
    let single = txns.len() == 1;
    let txn = match txns.pop() {
        Some(txn) if single => txn,
        Some(last) => {
            txns.push(last);
            Txn::new().and_then(txns.into_iter().map(TxnOp::txn).collect::<Vec<_>>())
        }
        None => return,
    };
    let response = match retried(&mut client, txn).await {
        Ok(response) => response,
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(copy(&e)));
            }
            return;
        }
    };
    let revision = response.header().map_or(0, |h| h.revision());
    if single {
        if let Some(answer) = answers.pop() {
            let _ = answer.send(Ok(Answer::of(&response, revision)));
        }
        return;
    }
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

/// Sends `txn`, again after a pause while etcd cannot answer (a member died, an election is
/// on, no answer within [`ATTEMPT_TIMEOUT`]), for up to [`RETRY_FOR`]. Sending one again is safe: every txn sent here compares the
/// revisions it expects, and its writer recognises its own writes in the answer to a second
/// sending when the first was applied but its answer lost.
async fn retried(client: &mut Client, txn: Txn) -> Result<TxnResponse, Error> {
    let give_up = Instant::now() + RETRY_FOR;
    let mut pause = Duration::from_millis(50);
    loop {
        let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, client.txn(txn.clone()))
            .await
            .unwrap_or_else(|_| Err(Error::IoError(std::io::ErrorKind::TimedOut.into())));
        match answer {
            Err(e) if transient(&e) && Instant::now() + pause < give_up => {
                tracing::debug!(error = %e, retry_in_ms = pause.as_millis() as u64, "etcd could not answer; sending again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            answer => return answer,
        }
    }
}

/// Whether `error` says etcd could not answer now (as opposed to refusing the request).
fn transient(error: &Error) -> bool {
    match error {
        Error::TransportError(_) | Error::IoError(_) => true,
        Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Unknown
                | Code::Cancelled
                | Code::Aborted
        ),
        _ => false,
    }
}

/// The same failure for every txn of a request.
fn copy(error: &Error) -> Error {
    match error {
        Error::GRpcStatus(status) => Error::GRpcStatus(status.clone()),
        other => Error::Internal(other.to_string()),
    }
}
