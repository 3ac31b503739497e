//! What the master knows of PostgreSQL and etcd, so that a request that needs one of them while
//! it is down is answered 503 at once, instead of after the connection pool's timeout, and so
//! that readiness says the same.
//!
//! A watcher asks each dependency a trivial question every [`PROBE_EVERY`] (each answer
//! bounded by [`PROBE_TIMEOUT`]); [`FAILURES_TO_DOWN`] unanswered questions in a row mark it
//! down (one slow answer from a busy server does not), and one answer marks it up again, so a
//! dependency that came back is known within [`PROBE_EVERY`] plus an answer. A request that
//! finds one unreachable (a connection error, not a slow query) marks it down at once, so the
//! requests after it do not wait either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

/// How often each dependency is asked.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How long a probe may take before it counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Unanswered probes in a row that mark a dependency down.
const FAILURES_TO_DOWN: u32 = 2;

/// The master's dependencies that requests wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Postgres,
    Etcd,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Postgres => "PostgreSQL",
            Dependency::Etcd => "etcd",
        }
    }
}

/// Whether each dependency answered at the last look.
#[derive(Debug)]
pub struct Health {
    postgres: AtomicBool,
    etcd: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            postgres: AtomicBool::new(true),
            etcd: AtomicBool::new(true),
        }
    }
}

impl Health {
    fn flag(&self, dependency: Dependency) -> &AtomicBool {
        match dependency {
            Dependency::Postgres => &self.postgres,
            Dependency::Etcd => &self.etcd,
        }
    }

    pub fn is_up(&self, dependency: Dependency) -> bool {
        self.flag(dependency).load(Ordering::Relaxed)
    }

    /// A request found `dependency` unreachable.
    pub fn mark_down(&self, dependency: Dependency) {
        self.set(dependency, false);
    }

    fn set(&self, dependency: Dependency, up: bool) {
        if self.flag(dependency).swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(dependency = dependency.name(), "answers again");
            } else {
                tracing::warn!(
                    dependency = dependency.name(),
                    "unreachable; requests that need it get 503 at once"
                );
            }
        }
    }

    /// Probes PostgreSQL and etcd until the runtime ends.
    pub fn watch(self: &Arc<Self>, pool: PgPool, etcd: etcd_client::Client, probe_key: String) {
        let health = Arc::clone(self);
        tokio::spawn(async move {
            let mut failures = [0u32; 2];
            loop {
                let postgres =
                    tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&pool));
                let mut client = etcd.clone();
                let etcd =
                    tokio::time::timeout(PROBE_TIMEOUT, client.get(probe_key.as_str(), None));
                let (postgres, etcd) = tokio::join!(postgres, etcd);
                let answers = [
                    (Dependency::Postgres, matches!(postgres, Ok(Ok(_)))),
                    (Dependency::Etcd, matches!(etcd, Ok(Ok(_)))),
                ];
                for ((dependency, answered), failed) in answers.into_iter().zip(&mut failures) {
                    *failed = if answered { 0 } else { *failed + 1 };
                    if answered {
                        health.set(dependency, true);
                    } else if *failed >= FAILURES_TO_DOWN {
                        health.set(dependency, false);
                    }
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }
}
