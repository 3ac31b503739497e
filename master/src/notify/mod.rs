//! Outcomes: what a job's finished ticks set off beside their records — notifications to the
//! channels its rules name, and run-nows of the jobs it chains to.
//!
//! One notifier runs among all masters: the one holding a PostgreSQL session advisory lock
//! (all of its state — checkpoint, outcomes, deliveries — lives in PostgreSQL, so leadership
//! does too; a master that dies drops its connection and the lock with it). Correctness does
//! not rest on the lock: every record is acted on once through the `outcomes` table
//! ([`reader`]), and every delivery is leased before it is sent ([`deliver`]), so two
//! notifiers for a moment repeat nothing.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::RawDocumentBuf;
use mongodb::Collection;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use tokio_util::sync::CancellationToken;

pub mod channel;
pub mod channel_store;
pub mod deliver;
pub mod delivery_log;
pub mod email;
pub mod log_reads;
pub mod payload;
pub mod reader;
pub mod rules;
pub mod settings;
pub mod webhook;

use crate::metrics::Metrics;
use crate::prune::Pruner;
use crate::store::{Store, StoreError};

/// The advisory lock the notifier holds ("notifier").
const NOTIFIER_LOCK: i64 = 0x6e6f_7469_6669_6572;
/// How often the notifier reads new records and sends due deliveries.
const POLL: Duration = Duration::from_millis(500);
/// How long the lock's connection may take to answer before this master steps down.
/// Generous: correctness does not rest on the lock, and a leader that steps down under a
/// moment's load cuts its tries short.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a master that is not the notifier tries to become it.
const CAMPAIGN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mongo: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error(transparent)]
    Read(#[from] crate::read::ReadError),
    #[error("the connection holding the notifier lock stopped answering")]
    LockLost,
    #[error("MongoDB did not answer a read within {0:?}")]
    ReadTimeout(Duration),
}

/// The notifier of one master: campaigns, and reads, delivers and prunes while it leads.
#[derive(Debug)]
pub struct Notifier {
    pub reader: reader::Reader,
    pub sender: deliver::Sender,
    /// Retention, enforced while this notifier leads.
    pub pruner: Pruner,
}

impl Notifier {
    pub fn new(
        store: Store,
        log: Collection<RawDocumentBuf>,
        settings: &settings::NotifyArgs,
        public_url: String,
        metrics: Arc<Metrics>,
        pruner: Pruner,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            reader: reader::Reader::new(
                store.clone(),
                log,
                public_url,
                settings.notify_lookback_secs,
                Arc::clone(&metrics),
            ),
            sender: deliver::Sender {
                store,
                webhooks: webhook::Webhooks::new(settings.webhook_allow_link_local)?,
                mailer: email::Mailer::new(settings),
                metrics,
            },
            pruner,
        })
    }

    /// Campaigns, leads, and campaigns again after losing, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.campaign().await {
                Ok(Some(lock)) => {
                    tracing::info!("notifier elected");
                    self.reader.reset();
                    let result = tokio::select! {
                        result = self.lead(lock) => result,
                        () = shutdown.cancelled() => Ok(()),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "notifier stopped leading; campaigning again");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "notifier campaign failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(CAMPAIGN) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// The connection holding the notifier lock, if this master got it.
    async fn campaign(&self) -> Result<Option<PoolConnection<Postgres>>, NotifyError> {
        let mut connection = self.reader.store.pool.acquire().await?;
        // Whatever happens next, the connection never goes back to the pool: it may hold the
        // lock.
        connection.close_on_drop();
        let won: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(NOTIFIER_LOCK)
            .fetch_one(&mut *connection)
            .await?;
        Ok(won.then_some(connection))
    }

    /// Reads and delivers while `lock`'s connection answers: reading and sending run side by
    /// side, so a slow receiver does not hold up the records. A failed read or send is logged
    /// and tried again at the next poll; only losing the lock ends leadership, so a blip of
    /// MongoDB does not cut a send short and leave its delivery leased. The lock goes with the
    /// connection, which is closed rather than returned to the pool.
    async fn lead(&mut self, mut lock: PoolConnection<Postgres>) -> Result<(), NotifyError> {
        let reader = &mut self.reader;
        let sender = &self.sender;
        let holding = async {
            loop {
                // A half-open connection would keep this master leading beside the next one.
                tokio::time::timeout(ALIVE_TIMEOUT, sqlx::query("SELECT 1").execute(&mut *lock))
                    .await
                    .map_err(|_| NotifyError::LockLost)??;
                tokio::time::sleep(POLL).await;
            }
        };
        let reading = async {
            loop {
                if let Err(e) = reader.poll().await {
                    tracing::warn!(error = %e, "notifier read failed; reading again");
                }
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::select! {
            result = holding => result,
            () = reading => Ok(()),
            () = sender.run(POLL) => Ok(()),
            () = self.pruner.run() => Ok(()),
        }
    }
}
