//! cronfleet's worker: watch → schedule → claim → execute → log.
//!
//! * [`watcher`] keeps a snapshot of everything under the etcd prefix current and turns changes
//!   into [`watcher::Change`]s.
//! * [`scheduler`] holds the plan (jobs by next fire time), moves due ticks and run-now
//!   requests into the [`queue`], and starts a [`tick`] task for each when its [`turn`] in
//!   the fleet ([`rendezvous`]) has come and a [`slot`] is free.
//! * [`claim`] makes each (job, tick) start at most once in the fleet; the claim's revision is
//!   the run's fencing token; [`fanout`] claims each worker's own run of a job run on every
//!   worker, [`requests`] run-now requests and pending attempts, and [`chain`] the attempts of
//!   a tick being retried. [`records`] builds what a
//!   tick writes to the log, and [`missed`] writes each `missed` record once.
//! * [`executor`] runs the shell command in its own process group, with [`output`] capture,
//!   timeout and kill, under a [`supervisor`] that takes the run down if the worker dies;
//!   [`runs`] is the table of runs in progress.
//! * [`live`] sends the end of a long run's output to MongoDB while it runs.
//! * [`session`] keeps the worker's lease and registration.
//! * [`log_sink`] and [`spool`] get every execution record to Mongo, across outages and
//!   restarts; uploads wait for a pause in the worker's [`starts`].
//! * [`legacy`] keeps a mixed fleet (go-crontab workers beside these) to one run per tick.
//! * [`metrics`] counts claims, ticks and runs for Prometheus.

pub mod batch;
pub mod chain;
pub mod claim;
pub mod clock;
pub mod config;
pub mod executor;
pub mod fanout;
pub mod holds;
pub mod launcher;
pub mod legacy;
pub mod live;
pub mod log_sink;
pub mod metrics;
pub mod missed;
pub mod output;
pub mod priority;
pub mod queue;
pub mod records;
pub mod rendezvous;
pub mod requests;
pub mod run_limits;
pub mod run_server;
pub mod runs;
pub mod scheduler;
pub mod session;
pub mod skew;
pub mod slot;
pub mod spool;
pub mod starts;
pub mod supervisor;
pub mod tick;
pub mod turn;
pub mod upload;
pub mod watcher;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cronfleet_common::record::LOG_COLLECTION;
use cronfleet_common::{ExecutionRecord, Keys};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::Batcher;
use crate::claim::Claimer;
use crate::clock::Clock;
use crate::config::Config;
use crate::executor::{Limits, RunAs};
use crate::holds::Holds;
use crate::log_sink::LogSink;
use crate::metrics::{Gauges, Metrics};
use crate::run_limits::RunLimits;
use crate::runs::{Runs, StopReason};
use crate::scheduler::Scheduler;
use crate::session::{Registration, Session};
use crate::spool::Spool;
use crate::starts::Starts;
use crate::upload::Uploader;
use crate::watcher::Watcher;

/// How long a stopping worker keeps trying to hand spooled records to Mongo.
const FINAL_UPLOAD: Duration = Duration::from_secs(5);

/// A connected worker, ready to run.
pub struct Worker {
    config: Config,
    worker_id: String,
    keys: Keys,
    etcd: etcd_client::Client,
    log: mongodb::Collection<ExecutionRecord>,
    spool: Spool,
    run_as: Option<RunAs>,
    supervisor: PathBuf,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Checks the settings and connects to etcd and Mongo (Mongo may be down: records wait in
    /// the spool).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let worker_id = config.worker_id();
        // A run's supervisor ends the run the grace period (and a moment) before the lease
        // would run out unconfirmed: the lease must outlast a renewal and the grace.
        anyhow::ensure!(
            config.lease_ttl_secs
                >= i64::try_from(config.kill_grace_secs)
                    .unwrap_or(i64::MAX)
                    .saturating_add(2),
            "--lease-ttl-secs ({}) must be at least --kill-grace-secs ({}) + 2",
            config.lease_ttl_secs,
            config.kill_grace_secs
        );
        cronfleet_common::JobName::parse(&worker_id)
            .map_err(|e| anyhow::anyhow!("worker id {worker_id:?}: {}", e.reason))?;
        let keys = Keys::new(&config.etcd.etcd_prefix)
            .map_err(|e| anyhow::anyhow!("--etcd-prefix: {}", e.reason))?;
        let etcd = config
            .etcd
            .connect(Some(Duration::from_secs(5)))
            .await
            .map_err(anyhow::Error::msg)?;
        let mut mongo_options = mongodb::options::ClientOptions::parse(&config.mongo_url)
            .await
            .context("parsing --mongo-url")?;
        mongo_options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(3));
        mongo_options
            .app_name
            .get_or_insert_with(|| "cronfleet-worker".to_owned());
        let log = mongodb::Client::with_options(mongo_options)
            .context("configuring the Mongo client")?
            .database(&config.mongo_db)
            .collection(LOG_COLLECTION);
        let spool = Spool::open(&config.spool_dir)
            .with_context(|| format!("opening the spool at {}", config.spool_dir.display()))?;
        let supervisor = std::env::current_exe()
            .context("finding the worker's own binary")?
            .with_file_name(supervisor::BINARY);
        anyhow::ensure!(
            supervisor.is_file(),
            "{} is missing: install {} next to cronfleet-worker",
            supervisor.display(),
            supervisor::BINARY
        );
        let run_as = config
            .run_as
            .as_deref()
            .map(RunAs::lookup)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--run-as: {e}"))?;
        Ok(Self {
            config,
            worker_id,
            keys,
            etcd,
            log,
            spool,
            run_as,
            supervisor,
        })
    }

    /// This worker's id in the fleet.
    pub fn id(&self) -> &str {
        &self.worker_id
    }

    /// Runs until `shutdown`, then stops claiming, lets runs finish within the kill grace,
    /// stops the rest, flushes every record and revokes the lease.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let config = self.config;
        let runs = Runs::default();
        let metrics = Arc::new(Metrics::default());
        let holds = Holds::default();
        let clock = Clock::with_offset_ms(config.clock_offset_ms);
        let reregister = Arc::new(Notify::new());
        let slots = Arc::new(Semaphore::new(config.slots as usize));
        let metrics_stop = CancellationToken::new();
        let metrics_server = match config.metrics_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("--metrics-listen {address}"))?;
                tracing::info!(%address, "serving metrics at /metrics");
                Some(tokio::spawn(metrics::serve(
                    listener,
                    Arc::clone(&metrics),
                    Gauges {
                        slots: config.slots as usize,
                        permits: Arc::clone(&slots),
                        spool_dir: config.spool_dir.clone(),
                        holds: holds.clone(),
                    },
                    metrics_stop.clone(),
                )))
            }
            None => None,
        };
        let (lease_tx, lease_rx) = watch::channel(None);
        let (lease_until_tx, lease_until_rx) = watch::channel(None);
        let (records_tx, records_rx) = mpsc::channel(4096);
        let sealed = Arc::new(Notify::new());
        let starts = Arc::new(Starts::default());
        let live = live::Feed::spawn(
            self.log
                .client()
                .database(&config.mongo_db)
                .collection(live::COLLECTION),
            self.worker_id.clone(),
        );

        let sink = tokio::spawn(
            LogSink {
                spool: self.spool,
                batch_size: usize::from(config.log_batch_size),
                flush: config.log_flush(),
                sealed: Arc::clone(&sealed),
                log: self.log.clone(),
                holds: holds.clone(),
            }
            .run(records_rx),
        );
        let uploader = Uploader {
            dir: config.spool_dir.clone(),
            log: self.log,
            sealed,
            reachable: Arc::new(AtomicBool::new(true)),
            starts: Arc::clone(&starts),
        };
        let upload_stop = CancellationToken::new();
        let upload = tokio::spawn(uploader.clone().run(upload_stop.clone()));

        let session_stop = CancellationToken::new();
        let session = tokio::spawn(
            Session {
                client: self.etcd.clone(),
                key: self.keys.worker(&self.worker_id),
                ttl_secs: config.lease_ttl_secs,
                registration: Registration {
                    id: self.worker_id.clone(),
                    hostname: nix::unistd::gethostname()
                        .map(|h| h.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    started_at: clock.now(),
                    slots: config.slots as usize,
                    running: Vec::new(),
                    heartbeat_at: clock.now(),
                    holds: Vec::new(),
                    labels: config.labels(),
                },
                holds: holds.clone(),
                clock,
                reregister: Arc::clone(&reregister),
                runs: runs.clone(),
                lease: lease_tx,
                lease_until: lease_until_tx,
            }
            .run(session_stop.clone()),
        );

        let context = Arc::new(tick::Context {
            claimer: Claimer {
                etcd: Batcher::spawn(self.etcd.clone(), Arc::clone(&metrics)),
                keys: self.keys.clone(),
                metrics: Arc::clone(&metrics),
            },
            clock,
            runs: runs.clone(),
            records: records_tx,
            limits: Limits {
                output_cap: usize::try_from(config.output_cap_bytes).unwrap_or(usize::MAX),
                kill_grace: config.kill_grace(),
                launcher: launcher::Launcher::new(self.supervisor),
                run_as: self.run_as,
                lease_until: Some(lease_until_rx),
                run_limits: RunLimits {
                    open_files: config.run_max_open_files,
                    processes: config.run_max_processes,
                    address_space: config.run_max_address_space_bytes,
                    core_dumps: config.run_core_dumps,
                },
                shells: config.shells.clone(),
                live: Some(live),
            },
            worker_id: self.worker_id.clone(),
            labels: config.labels(),
            lease: lease_rx,
            holds,
            reregister,
            max_clock_skew_ms: i64::from(config.max_clock_skew_ms),
            legacy: Arc::default(),
            metrics,
            starts,
        });
        let (changes_tx, changes_rx) = mpsc::channel(1024);
        let watcher = tokio::spawn(
            Watcher::new(self.etcd.clone(), self.keys.clone(), clock)
                .run(changes_tx, shutdown.clone()),
        );
        let tasks = TaskTracker::new();
        tracing::info!(worker.id = %self.worker_id, "worker started");
        Scheduler::new(Arc::clone(&context), slots, tasks.clone())
            .run(changes_rx, shutdown.clone())
            .await;

        tracing::info!(
            running = runs.len(),
            "shutting down: no new claims; letting runs finish"
        );
        tasks.close();
        if tokio::time::timeout(config.kill_grace(), tasks.wait())
            .await
            .is_err()
        {
            let stopped = runs.stop_all(StopReason::Shutdown);
            tracing::warn!(stopped, "grace period over; stopping the remaining runs");
            tasks.wait().await;
        }
        shutdown.cancel();
        watcher.await.context("watcher task")?.context("watcher")?;
        drop(context);
        sink.await.context("log sink task")?;
        upload_stop.cancel();
        upload.await.context("uploader task")?;
        uploader.drain(FINAL_UPLOAD).await;
        session_stop.cancel();
        session.await.context("session task")?;
        metrics_stop.cancel();
        if let Some(server) = metrics_server {
            server.await.context("metrics task")?;
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}
