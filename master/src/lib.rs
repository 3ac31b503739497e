//! cronfleet's master: where people and automation change jobs.
//!
//! * [`domain`] is the pure core: commands decided against a job's state into events, events
//!   applied to the state.
//! * [`store`] appends events to PostgreSQL with the `jobs` read model in one transaction, and
//!   answers the read queries.
//! * [`projector`] applies committed events to etcd, one master at a time; beside it,
//!   [`projector::drift`] records writes to `jobs/` made outside the master (go-crontab,
//!   `etcdctl`).
//! * [`http`] serves the REST API, its OpenAPI document, health, readiness and [`metrics`].
//! * [`rebuild`] replays the whole log into a fresh read model and etcd.

pub mod accounts;
pub mod config;
pub mod domain;
pub mod health;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod projector;
pub mod prune;
pub mod read;
pub mod rebuild;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cronfleet_common::record::LOG_COLLECTION;
use cronfleet_common::Keys;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{redact, Config};
use crate::health::Health;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::notify::settings::NotifyArgs;
use crate::notify::Notifier;
use crate::projector::Projector;
use crate::prune::{Pruner, RetentionArgs};
use crate::read::Reads;
use crate::store::Store;

/// The migrations in `migrations/`, embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a request waits on a dependency before answering 503.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections to the three services.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    /// For requests: every call gives up after a second.
    pub etcd: etcd_client::Client,
    /// For the projector, whose election call blocks until it wins.
    pub etcd_blocking: etcd_client::Client,
    pub keys: Keys,
    pub log: mongodb::Collection<mongodb::bson::RawDocumentBuf>,
    /// Mark session cookies `Secure`.
    pub secure_cookies: bool,
    /// Counters every part of this master adds to.
    pub metrics: Arc<Metrics>,
    pub notify: NotifyArgs,
    /// The fleet's default retention and the pruner's pace.
    pub retention: RetentionArgs,
    /// Where users reach this master, for links in notifications.
    pub public_url: String,
    /// Whether PostgreSQL and etcd answer, kept by a watcher task.
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// The store alone (PostgreSQL, migrated), for commands that need nothing else.
    pub async fn store(config: &Config) -> anyhow::Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(DEPENDENCY_TIMEOUT)
            .connect(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "connecting to PostgreSQL at {}",
                    redact(&config.database_url)
                )
            })?;
        MIGRATOR.run(&pool).await.context("applying migrations")?;
        Ok(Store { pool })
    }

    /// Connects and applies pending migrations.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let keys = Keys::new(&config.etcd.etcd_prefix)
            .map_err(|e| anyhow::anyhow!("--etcd-prefix: {}", e.reason))?;
        let store = Self::store(config).await?;
        let pool = store.pool.clone();
        tokio::task::spawn_blocking(identity::prepare_decoy)
            .await
            .context("preparing the sign-in decoy")?;
        let etcd = config
            .etcd
            .connect(Some(DEPENDENCY_TIMEOUT))
            .await
            .map_err(anyhow::Error::msg)?;
        let etcd_blocking = config
            .etcd
            .connect(None)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut mongo = mongodb::options::ClientOptions::parse(&config.mongo_url)
            .await
            .context("parsing --mongo-url")?;
        mongo
            .server_selection_timeout
            .get_or_insert(DEPENDENCY_TIMEOUT);
        mongo
            .app_name
            .get_or_insert_with(|| "cronfleet-master".to_owned());
        let log = mongodb::Client::with_options(mongo)
            .context("configuring the MongoDB client")?
            .database(&config.mongo_db)
            .collection(LOG_COLLECTION);
        let health = Arc::new(Health::default());
        health.watch(pool.clone(), etcd.clone(), keys.projector_checkpoint());
        Ok(Self {
            health,
            store: Store { pool },
            etcd,
            etcd_blocking,
            keys,
            log,
            secure_cookies: config.secure_cookies,
            metrics: Arc::new(Metrics::default()),
            notify: config.notify.clone(),
            retention: config.retention.clone(),
            public_url: config
                .notify
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.listen)),
        })
    }

    /// The state the HTTP handlers share.
    pub fn app_state(&self) -> AppState {
        AppState {
            store: self.store.clone(),
            reads: Reads {
                store: self.store.clone(),
                log: self.log.clone(),
                etcd: self.etcd.clone(),
                keys: self.keys.clone(),
            },
            metrics: Arc::clone(&self.metrics),
            throttle: Arc::default(),
            health: Arc::clone(&self.health),
            secure_cookies: self.secure_cookies,
            webhook_allow_link_local: self.notify.webhook_allow_link_local,
            retention: self.retention.default_retention(),
        }
    }

    /// This master's notifier candidate.
    pub fn notifier(&self) -> anyhow::Result<Notifier> {
        let pruner = Pruner {
            store: self.store.clone(),
            log: self.log.clone(),
            default: self.retention.default_retention(),
            every: Duration::from_secs(self.retention.retention_every_secs),
            settle_ms: i64::from(self.notify.notify_lookback_secs) * 1000,
        };
        Notifier::new(
            self.store.clone(),
            self.log.clone(),
            &self.notify,
            self.public_url.clone(),
            Arc::clone(&self.metrics),
            pruner,
        )
    }

    /// A projector candidate named `candidate`.
    pub fn projector(&self, lease_ttl_secs: i64, candidate: String) -> Projector {
        Projector {
            store: self.store.clone(),
            etcd: self.etcd_blocking.clone(),
            keys: self.keys.clone(),
            lease_ttl_secs,
            candidate,
        }
    }
}

/// A master bound to its port.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    services: Services,
    lease_ttl_secs: i64,
}

impl App {
    /// Connects and binds (port 0 picks a free one; see [`App::local_addr`]).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let services = Services::connect(config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            listener,
            services,
            lease_ttl_secs: config.projector_lease_ttl_secs,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves HTTP and runs for projector leadership until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let address = self.listener.local_addr()?;
        let state = self.services.app_state();
        let projector = self.services.projector(
            self.lease_ttl_secs,
            format!("{address}-{}", std::process::id()),
        );
        let projecting = tokio::spawn(projector.run(shutdown.clone()));
        let notifying = tokio::spawn(self.services.notifier()?.run(shutdown.clone()));
        tracing::info!(%address, "master serving");
        let serving = shutdown.clone();
        axum::serve(self.listener, http::router(state))
            .with_graceful_shutdown(async move { serving.cancelled().await })
            .await
            .context("serving HTTP")?;
        shutdown.cancel();
        projecting.await.context("projector task")?;
        notifying.await.context("notifier task")?;
        Ok(())
    }
}
